"""Reference knowledge probe in real torch, written the way THUDM/P-tuning's LAMA code works: look the
query up with unk at the pseudo positions, then overwrite those rows one by one with the prompt encoder's
output, run the LM on `inputs_embeds` and read the logits at the answer position."""

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

from ..config import PTuningConfig
from .modeling import PromptedBackbone, drop_pooler
from .pretraining_heads import randomize_head_constants


class LamaProbe(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.config = config
        self.encoder = PromptedBackbone(drop_pooler(backbone), config)
        self.masked = backbone.config.model_type == "bert"
        if self.masked:
            self.cls = BertOnlyMLMHead(backbone.config)
            self.cls.predictions.decoder.weight = backbone.get_input_embeddings().weight
            randomize_head_constants(self.cls.predictions)
            if config.mode == "prompt":
                for p in self.cls.parameters():
                    p.requires_grad = False

    def embed_with_prompts(self, input_ids, prompt_index):
        embeds = self.encoder.backbone.get_input_embeddings()(input_ids).clone()
        prompts = self.encoder.prompt_encoder()
        for row, column in (prompt_index >= 0).nonzero().tolist():
            embeds[row, column] = prompts[prompt_index[row, column]]
        return embeds

    def forward(self, input_ids, attention_mask, prompt_index, answer_position, labels=None):
        backbone = self.encoder.backbone
        if self.config.mode == "prompt":
            hidden = backbone(inputs_embeds=self.embed_with_prompts(input_ids, prompt_index),
                              attention_mask=attention_mask).last_hidden_state
        else:
            hidden, _ = self.encoder(input_ids, attention_mask)
        answer_hidden = hidden[torch.arange(hidden.shape[0]), answer_position]
        if self.masked:
            logits = self.cls(answer_hidden)
        else:
            logits = F.linear(answer_hidden, backbone.get_input_embeddings().weight)
        return (None if labels is None else F.cross_entropy(logits, labels.long())), logits


HEADS = {"lama": LamaProbe}
