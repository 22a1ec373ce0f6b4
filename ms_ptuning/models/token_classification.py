"""Token classification (NER, SRL) in prefix / prompt / finetune mode."""

from mindspore import nn

from ..config import PTuningConfig
from ..injection import PromptedBackbone
from ..layers import Dropout, Linear
from ..losses import token_classification_loss
from ..backbones import drop_pooler


class TokenClassifier(nn.Cell):
    """sequence output of the real tokens → dropout → Linear(H, num_labels); the loss covers attended tokens
    whose label is not -100 (prefix and prompt positions never reach it: the encoder returns real tokens only)."""

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.encoder = PromptedBackbone(drop_pooler(backbone), config)
        self.dropout = Dropout(config.classifier_dropout)
        self.classifier = Linear(backbone.config.hidden_size, config.num_labels)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence_output, _ = self.encoder(input_ids, attention_mask, token_type_ids)  # (B, T, H)
        logits = self.classifier(self.dropout(sequence_output))  # (B, T, num_labels)
        if labels is None:
            return None, logits
        return token_classification_loss(logits, labels, attention_mask), logits
