from torch import nn
from torch.nn import functional as F

from ...config import PTuningConfig
from ..layers import linear
from .base import PTuningHead
from .context_pooler import pooler_for


def sequence_classification_loss(logits, labels, problem_type):
    if problem_type == "regression":
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class SequenceClassifier(PTuningHead):
    head_name = "sequence_classification"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config)
        self.pooler = pooler_for(self.backbone)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = linear(self.backbone.config.hidden_size, config.num_labels, self.init_std)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence, pooled = self.encoder(input_ids, attention_mask, token_type_ids)
        if self.pooler is not None:
            pooled = self.pooler(sequence)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config.problem_type)
        return loss, logits
