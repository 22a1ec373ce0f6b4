"""Sequence classification (single-label, multi-label, regression) in prefix / prompt / finetune mode."""

from mindspore import nn

from ..config import PTuningConfig
from ..injection import PromptedBackbone
from ..layers import Dropout, Linear
from ..losses import check_sequence_labels, sequence_classification_loss
from .context_pooler import pooler_for


class SequenceClassifier(nn.Cell):
    """pooled output → dropout → Linear(H, num_labels), the reference's head for BERT and RoBERTa alike;
    DeBERTa's pooled output comes from a trainable `ContextPooler`, as in the reference."""

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.config = config
        self.pooler = pooler_for(backbone)
        self.encoder = PromptedBackbone(backbone, config)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(backbone.config.hidden_size, config.num_labels)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence_output, pooled = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H), (B, H)
        if self.pooler is not None:
            pooled = self.pooler(sequence_output)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        if labels is None:
            return None, logits
        return sequence_classification_loss(logits, labels, self.config.problem_type), logits

    def check_dataset(self, dataset, source: str = "dataset") -> None:
        if "labels" in dataset.columns:
            check_sequence_labels(dataset.columns["labels"], self.config.num_labels, self.config.problem_type, source)
