"""Extractive question answering (SQuAD) in prefix / prompt / finetune mode."""

from mindspore import ops

from ..config import PTuningConfig
from ..layers import Linear
from ..losses import span_extraction_loss
from .base import PTuningHead


class QuestionAnswering(PTuningHead):
    """sequence output → Linear(H, 2), no dropout as in the reference → (start_logits, end_logits), each (B, T)."""

    head_name = "question_answering"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype, sequence_output_only=True)
        self.qa_outputs = Linear(self.backbone.config.hidden_size, 2, std=self.init_std)

    def construct(self, input_ids, attention_mask, token_type_ids=None, start_positions=None, end_positions=None):
        sequence_output, _ = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        start_logits, end_logits = ops.unstack(self.qa_outputs(sequence_output), axis=-1)  # 2 × (B, T)
        if start_positions is None or end_positions is None:
            return None, (start_logits, end_logits)
        loss = span_extraction_loss(start_logits, end_logits, start_positions, end_positions)
        return loss, (start_logits, end_logits)
