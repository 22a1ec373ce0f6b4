from torch import nn
from torch.nn import functional as F

from ...config import PTuningConfig
from ..layers import linear
from .base import PTuningHead
from .context_pooler import pooler_for


class MultipleChoice(PTuningHead):
    head_name = "multiple_choice"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config)
        self.pooler = pooler_for(self.backbone)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = linear(self.backbone.config.hidden_size, 1, self.init_std)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        batch, choices, length = input_ids.shape
        flat = [None if x is None else x.reshape(batch * choices, length)
                for x in (input_ids, attention_mask, token_type_ids)]
        sequence, pooled = self.encoder(*flat)
        if self.pooler is not None:
            pooled = self.pooler(sequence)
        logits = self.classifier(self.dropout(pooled)).reshape(batch, choices)
        return (None if labels is None else F.cross_entropy(logits, labels.long())), logits
