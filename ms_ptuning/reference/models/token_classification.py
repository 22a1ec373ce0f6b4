from torch import nn
from torch.nn import functional as F

from ...config import PTuningConfig
from ..layers import linear
from .base import PTuningHead


class TokenClassifier(PTuningHead):
    head_name = "token_classification"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config, sequence_output_only=True)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = linear(self.backbone.config.hidden_size, config.num_labels, self.init_std)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(sequence))
        if labels is None:
            return None, logits
        # the mask holds the real tokens only: the reference's prefix part of it is sliced off before the loss
        targets = labels.reshape(-1).long().masked_fill(attention_mask.reshape(-1) != 1, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=-100), logits
