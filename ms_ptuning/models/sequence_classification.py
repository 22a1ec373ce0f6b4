"""Sequence classification (single-label, multi-label, regression) in prefix / prompt / finetune mode."""

from ..config import PTuningConfig
from ..layers import Dropout, Linear
from ..losses import check_sequence_labels, sequence_classification_loss
from .base import PTuningHead
from .context_pooler import pooler_for


class SequenceClassifier(PTuningHead):
    """pooled output → dropout → Linear(H, num_labels), the reference's head for BERT and RoBERTa alike;
    DeBERTa's pooled output comes from a trainable `ContextPooler`, as in the reference."""

    head_name = "sequence_classification"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype)
        self.pooler = pooler_for(self.backbone)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(self.backbone.config.hidden_size, config.num_labels, std=self.init_std)

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
