from torch.nn import functional as F

from ...config import PTuningConfig
from ..layers import linear
from .base import PTuningHead


class QuestionAnswering(PTuningHead):
    head_name = "question_answering"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config, sequence_output_only=True)
        self.qa_outputs = linear(self.backbone.config.hidden_size, 2, self.init_std)

    def forward(self, input_ids, attention_mask, token_type_ids=None, start_positions=None, end_positions=None):
        sequence, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        start_logits, end_logits = (part.squeeze(-1) for part in self.qa_outputs(sequence).split(1, dim=-1))
        if start_positions is None or end_positions is None:
            return None, (start_logits, end_logits)
        ignored = start_logits.shape[1]
        start_loss = F.cross_entropy(start_logits, start_positions.long().clamp(0, ignored), ignore_index=ignored)
        end_loss = F.cross_entropy(end_logits, end_positions.long().clamp(0, ignored), ignore_index=ignored)
        return (start_loss + end_loss) / 2, (start_logits, end_logits)
