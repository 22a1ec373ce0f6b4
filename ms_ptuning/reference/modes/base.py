"""Reference of `ms_ptuning.modes.base`: the backbone called with the inputs a mode prepares."""

import torch
from torch import nn

from ...config import PTuningConfig
from ..hf_backbone import as_backbone


class PromptedBackbone(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.config = config
        self.backbone = as_backbone(backbone, trainable=config.trains_backbone)
        self.num_layers = self.backbone.config.num_hidden_layers
        self.num_virtual_tokens = config.num_virtual_tokens

    def forward(self, input_ids, attention_mask, token_type_ids=None, position_ids=None):
        sequence_output, pooled = self.backbone(*self.backbone_inputs(input_ids, attention_mask, token_type_ids,
                                                                      position_ids))
        return self.trim(sequence_output, pooled)

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids):
        return input_ids, None, attention_mask, token_type_ids, position_ids, None

    def trim(self, sequence_output, pooled):
        return sequence_output, pooled

    def behind_virtual_tokens(self, attention_mask, position_ids):
        if not self.num_virtual_tokens:
            return attention_mask, position_ids
        ones = torch.ones(attention_mask.shape[0], self.num_virtual_tokens, dtype=attention_mask.dtype)
        attention_mask = torch.cat([ones, attention_mask], dim=1)
        return attention_mask, (None if position_ids is None else position_ids + self.num_virtual_tokens)
