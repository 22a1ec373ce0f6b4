"""Multiple choice (COPA) in prefix / prompt / finetune mode."""

from mindspore import ops

from ..config import PTuningConfig
from ..layers import Dropout, Linear
from ..losses import sequence_classification_loss
from .base import PTuningHead
from .context_pooler import pooler_for


class MultipleChoice(PTuningHead):
    """Inputs (B, C, T) run as B·C sequences (each with its own prefix); pooled output → dropout →
    Linear(H, 1) gives one score per choice, (B, C); cross-entropy over the choices."""

    head_name = "multiple_choice"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype)
        self.pooler = pooler_for(self.backbone)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(self.backbone.config.hidden_size, 1, std=self.init_std)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        batch, choices, length = input_ids.shape
        flat = [None if x is None else ops.reshape(x, (batch * choices, length))
                for x in (input_ids, attention_mask, token_type_ids)]
        sequence_output, pooled = self.encoder(*flat)  # (B·C, T, H), (B·C, H)
        if self.pooler is not None:
            pooled = self.pooler(sequence_output)
        logits = ops.reshape(self.classifier(self.dropout(pooled)), (batch, choices))
        if labels is None:
            return None, logits
        return sequence_classification_loss(logits, labels, "single_label_classification"), logits
