"""Token classification (NER, SRL) in prefix / prompt / finetune mode."""

from ..config import PTuningConfig
from ..layers import Dropout, Linear
from ..losses import token_classification_loss
from .base import PTuningHead


class TokenClassifier(PTuningHead):
    """sequence output of the real tokens → dropout → Linear(H, num_labels); the loss covers attended tokens
    whose label is not -100 (prefix and prompt positions never reach it: the encoder returns real tokens only)."""

    head_name = "token_classification"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype, sequence_output_only=True)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(self.backbone.config.hidden_size, config.num_labels, std=self.init_std)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence_output, _ = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        logits = self.classifier(self.dropout(sequence_output))  # (B, T, num_labels)
        if labels is None:
            return None, logits
        return token_classification_loss(logits, labels, attention_mask), logits
