"""Sequence classification (single-label, multi-label, regression) in prefix / prompt / finetune mode."""

import numpy as np
from mindspore import Tensor, nn, ops

from ..config import PTuningConfig, uses_roberta_classification_head
from ..layers import Dropout, Linear
from ..losses import check_sequence_labels, sequence_classification_loss
from .base import PTuningHead
from .context_pooler import pooler_for


class RobertaClassificationHead(nn.Cell):
    """Hugging Face's RoBERTa head: first token (<s>) → dropout → Linear(H, H) → tanh → dropout →
    Linear(H, num_labels), parameters `dense` and `out_proj` as Hugging Face names them."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, std: float):
        super().__init__()
        self.dense = Linear(hidden_size, hidden_size, std=std)
        self.out_proj = Linear(hidden_size, num_labels, std=std)
        self.input_dropout = Dropout(dropout)  # two sites: each dropout draws its own mask
        self.hidden_dropout = Dropout(dropout)
        self.first_position = Tensor(np.array(0, dtype=np.int32))

    def construct(self, sequence_output):
        first_token = ops.gather(sequence_output, self.first_position, 1)  # (B, T, H) → (B, H)
        hidden = ops.tanh(self.dense(self.input_dropout(first_token)))
        return self.out_proj(self.hidden_dropout(hidden))  # (B, num_labels)


class SequenceClassifier(PTuningHead):
    """pooled output → dropout → Linear(H, num_labels), the reference's head for BERT and RoBERTa alike;
    DeBERTa's pooled output comes from a trainable `ContextPooler`, as in the reference; fine-tuned RoBERTa
    classifies with `RobertaClassificationHead`, as THUDM's fine-tuning path does."""

    head_name = "sequence_classification"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        roberta_head = uses_roberta_classification_head(backbone.config.model_type, config)
        super().__init__(backbone, config, compute_dtype, sequence_output_only=roberta_head)
        hidden_size = self.backbone.config.hidden_size
        self.roberta_head = roberta_head
        if roberta_head:
            self.classifier = RobertaClassificationHead(hidden_size, config.num_labels, config.classifier_dropout,
                                                        self.init_std)
            return
        self.pooler = pooler_for(self.backbone)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(hidden_size, config.num_labels, std=self.init_std)

    def logits(self, sequence_output, pooled):
        """(B, T, H) sequence output and (B, H) pooled output → (B, num_labels)."""
        if self.roberta_head:
            return self.classifier(sequence_output)
        if self.pooler is not None:
            pooled = self.pooler(sequence_output)
        return self.classifier(self.dropout(pooled))

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence_output, pooled = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H), (B, H)
        logits = self.logits(sequence_output, pooled)
        if labels is None:
            return None, logits
        return sequence_classification_loss(logits, labels, self.config.problem_type), logits

    def check_dataset(self, dataset, source: str = "dataset") -> None:
        if "labels" in dataset.columns:
            check_sequence_labels(dataset.columns["labels"], self.config.num_labels, self.config.problem_type, source)
