"""P-tuning v2 (deep prefix tuning): trainable key/value prefixes in front of every attention layer."""

from mindspore import ops

from ..config import PTuningConfig
from ..encoders import PrefixEncoder
from ..hf_backbone import HFCausalLM, cached_heads
from .base import PromptedBackbone, initializer_range


class PrefixTuning(PromptedBackbone):
    """The frozen backbone attends over P prefix keys/values before the real tokens of every layer. The
    prefix lives only in the attention (Hugging Face's past keys/values), so the outputs are the real
    tokens' already. The prefix table and MLP start at N(0, initializer_range), as THUDM's do."""

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype)
        model_config = self.backbone.config
        if isinstance(self.backbone, HFCausalLM):  # a causal LM run whole: does its cache take a prefix?
            self.backbone.check_prefix_cache()
        heads, head_dim = cached_heads(model_config)
        self.prefix_encoder = PrefixEncoder(config.pre_seq_len, model_config.num_hidden_layers, heads,
                                            heads * head_dim, config.prefix_projection, config.prefix_hidden_size,
                                            config.prefix_dropout, init_std=initializer_range(model_config))

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids) -> tuple:
        rows = ops.unstack(self.prefix_encoder(input_ids.shape[0]), 0)  # 2L × (B, kv heads, P, head_dim)
        prefix_key_values = tuple((rows[2 * layer], rows[2 * layer + 1]) for layer in range(self.num_layers))
        attention_mask, position_ids = self.behind_virtual_tokens(attention_mask, position_ids)
        return input_ids, None, attention_mask, token_type_ids, position_ids, prefix_key_values
