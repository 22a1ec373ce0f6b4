"""Reference of `ms_ptuning.modes.prefix`."""

from ...config import PTuningConfig
from ..encoders import PrefixEncoder
from .base import PromptedBackbone


class PrefixTuning(PromptedBackbone):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config)
        mc = self.backbone.config
        self.prefix_encoder = PrefixEncoder(config.pre_seq_len, mc.num_hidden_layers, mc.num_attention_heads,
                                            mc.hidden_size, config.prefix_projection, config.prefix_hidden_size,
                                            config.prefix_dropout, init_std=mc.initializer_range)

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids):
        prefix = self.prefix_encoder(input_ids.shape[0])
        layers = tuple((prefix[2 * i], prefix[2 * i + 1]) for i in range(self.num_layers))
        attention_mask, position_ids = self.behind_virtual_tokens(attention_mask, position_ids)
        return input_ids, None, attention_mask, token_type_ids, position_ids, layers
