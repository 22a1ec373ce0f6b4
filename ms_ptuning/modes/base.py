"""What every mode shares: a backbone (the Backbone interface of `hf_backbone`) called with the inputs the
mode prepares, and an output the mode trims to the real tokens.

A mode subclasses `PromptedBackbone` and overrides `backbone_inputs` (what enters the backbone) and `trim`
(what leaves it); `construct` and `decode` are the same for all. Tensor code here and in the modes is
`mindspore.ops` on static shapes only, so the native backbones can run it compiled (GRAPH_MODE).
"""

import numpy as np
from mindspore import Tensor, nn, ops

from ..config import PTuningConfig
from ..hf_backbone import as_backbone


class PromptedBackbone(nn.Cell):
    """`construct(input_ids, attention_mask, token_type_ids=None, position_ids=None)` returns
    `(sequence_output (B, T, H), pooled (B, H) or None)` for the real tokens. Explicit `position_ids` count
    from the first real token; with P virtual tokens in front the backbone sees them shifted by P, which is
    where Hugging Face's default positions start too, so left-padded generation sees what training saw."""

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__()
        self.config = config
        self.backbone = as_backbone(backbone, trainable=config.trains_backbone, compute_dtype=compute_dtype)
        self.num_layers = self.backbone.config.num_hidden_layers
        self.num_virtual_tokens = config.num_virtual_tokens

    def construct(self, input_ids, attention_mask, token_type_ids=None, position_ids=None):
        inputs = self.backbone_inputs(input_ids, attention_mask, token_type_ids, position_ids)
        sequence_output, pooled = self.backbone(*inputs)
        return self.trim(sequence_output, pooled)

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids) -> tuple:
        """(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids, prefix_key_values),
        the backbone's arguments in its order."""
        return input_ids, None, attention_mask, token_type_ids, position_ids, None

    def trim(self, sequence_output, pooled) -> tuple:
        """The backbone's outputs → those of the real tokens."""
        return sequence_output, pooled

    def decode(self, input_ids, attention_mask, position_ids, cache=None):
        """Incremental decoding for causal LMs: `(hidden (B, T, H) of the real tokens, cache)`.

        Without `cache` the virtual tokens enter as in `construct` and the returned cache holds them
        followed by `input_ids`; with it only the new tokens run. `attention_mask` covers every real token
        so far (B, T_total); `position_ids` (B, T) count from the first real token.
        """
        if cache is None:
            input_ids, embeds, mask, _, positions, prefix = self.backbone_inputs(input_ids, attention_mask, None,
                                                                                 position_ids)
            hidden, cache = self.backbone.decode(input_ids, embeds, mask, positions, None, prefix)
            return self.trim(hidden, None)[0], cache
        mask, positions = self.behind_virtual_tokens(attention_mask, position_ids)
        return self.backbone.decode(input_ids, None, mask, positions, cache)

    def decode_static(self, input_ids, attention_mask, position_ids, slot, cache):
        """One token per row against a fixed-size cache that `decode` filled (native GPT-2's
        `decode_static`): `attention_mask` (B, S − V) covers the cache's real slots (1 where a real token
        is, this one's slot included), `slot` (S,) is one-hot over all S slots, the V virtual ones first."""
        attention_mask, position_ids = self.behind_virtual_tokens(attention_mask, position_ids)
        return self.backbone.decode_static(input_ids, position_ids, attention_mask, slot, cache)

    def behind_virtual_tokens(self, attention_mask, position_ids):
        """The (B, T) mask and positions of the real tokens → those of the P + T positions the backbone
        attends over: the virtual ones are always attended to, the real positions shift by P."""
        if not self.num_virtual_tokens:
            return attention_mask, position_ids
        ones = ops.ones((attention_mask.shape[0], self.num_virtual_tokens), attention_mask.dtype)
        attention_mask = ops.concat((ones, attention_mask), 1)
        if position_ids is not None:
            position_ids = ops.add(position_ids, self.num_virtual_tokens)
        return attention_mask, position_ids


def initializer_range(model_config) -> float:
    """The std new modules start at, N(0, std) as transformers' `_init_weights` draws them: the config's
    `initializer_range` (OPT names it `init_std`)."""
    return getattr(model_config, "initializer_range", None) or model_config.init_std


def virtual_positions(count: int) -> Tensor:
    """(1, count) positions 0 … count-1, built once (`ops.arange` is unusable after `import mindnlp`)."""
    return Tensor(np.arange(count, dtype=np.int64)[None])
