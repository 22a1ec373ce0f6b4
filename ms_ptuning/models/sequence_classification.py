"""Sequence classification (single-label, multi-label, regression) in prefix / prompt / finetune mode."""

from mindspore import nn

from ..config import PTuningConfig
from ..injection import PromptedBackbone
from ..layers import Dropout, Linear
from ..losses import sequence_classification_loss


class SequenceClassifier(nn.Cell):
    """pooled output → dropout → Linear(H, num_labels), the reference's head for BERT and RoBERTa alike."""

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        if getattr(backbone, "pooler", None) is None:
            raise ValueError(f"{type(backbone).__name__} has no pooler; sequence classification needs one")
        self.config = config
        self.encoder = PromptedBackbone(backbone, config)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(backbone.config.hidden_size, config.num_labels)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        _, pooled = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, H)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if labels is None:
            return None, logits
        return sequence_classification_loss(logits, labels, self.config.problem_type), logits
