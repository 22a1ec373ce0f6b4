"""Reference of `ms_ptuning.modes.prompt`. Template prompts are placed the way THUDM/P-tuning's LAMA code
places them: look the query up with unk at the pseudo positions, then overwrite those rows one by one."""

import torch

from ...config import PTuningConfig
from ..encoders import PromptEncoder
from .base import PromptedBackbone


class PromptTuning(PromptedBackbone):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config)
        mc = self.backbone.config
        table_std = mc.initializer_range if config.prompt_encoder_type == "embedding" else None
        self.prompt_encoder = PromptEncoder(config.pre_seq_len, mc.hidden_size, config.prompt_encoder_type, table_std)

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids):
        batch, count = input_ids.shape[0], self.num_virtual_tokens
        words = self.backbone.embed_words(input_ids)
        embeds = torch.cat([self.prompt_encoder().unsqueeze(0).expand(batch, -1, -1), words], dim=1)
        if token_type_ids is not None:
            token_type_ids = torch.cat([token_type_ids.new_zeros(batch, count), token_type_ids], dim=1)
        attention_mask, position_ids = self.behind_virtual_tokens(attention_mask, position_ids)
        if position_ids is not None:
            prompt_positions = torch.arange(count, dtype=position_ids.dtype).expand(batch, -1)
            position_ids = torch.cat([prompt_positions, position_ids], dim=1)
        return None, embeds, attention_mask, token_type_ids, position_ids, None

    def trim(self, sequence_output, pooled):
        real = sequence_output[:, self.num_virtual_tokens:]
        return real, self.backbone.pool(real)

    def forward_with_template_prompts(self, input_ids, attention_mask, prompt_index):
        embeds = self.backbone.embed_words(input_ids).clone()
        prompts = self.prompt_encoder()
        for row, column in (prompt_index >= 0).nonzero().tolist():
            embeds[row, column] = prompts[prompt_index[row, column]]
        return self.backbone(inputs_embeds=embeds, attention_mask=attention_mask)[0]
