"""Reference knowledge probe in real torch: the prompt mode's template prompts (THUDM/P-tuning's way), the
LM run on `inputs_embeds`, logits at the answer position."""

import torch
from torch.nn import functional as F
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

from ...config import PTuningConfig
from ..layers import normal_linears
from .base import PTuningHead
from .pretraining_heads import freeze, randomize_head_constants


class LamaProbe(PTuningHead):
    head_name = "lama"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config, sequence_output_only=True)
        self.masked = self.backbone.config.model_type == "bert"
        if self.masked:
            self.cls = BertOnlyMLMHead(self.backbone.config)
            normal_linears(self.cls, self.init_std)
            self.cls.predictions.decoder.weight = self.backbone.word_embedding_weight
            randomize_head_constants(self.cls.predictions)
            if config.mode == "prompt":
                freeze(self.cls)

    def forward(self, input_ids, attention_mask, prompt_index, answer_position, labels=None):
        if self.config.mode == "prompt":
            hidden = self.encoder.forward_with_template_prompts(input_ids, attention_mask, prompt_index)
        else:
            hidden, _ = self.encoder(input_ids, attention_mask)
        answer_hidden = hidden[torch.arange(hidden.shape[0]), answer_position]
        if self.masked:
            logits = self.cls(answer_hidden)
        else:
            logits = F.linear(answer_hidden, self.backbone.word_embedding_weight)
        return (None if labels is None else F.cross_entropy(logits, labels.long())), logits
