"""Native Llama and Qwen2: Hugging Face's `LlamaModel` / `Qwen2Model` (eager attention) as MindSpore Cells that
GRAPH_MODE compiles, with prefix keys/values (P-tuning v2) and a key/value cache for incremental decoding.

Parameter names and layouts are Hugging Face's (`embed_tokens.weight`, `layers.0.self_attn.q_proj.weight` as
torch's Linear (out, in), `layers.0.mlp.gate_proj.weight`, `norm.weight`). The two families differ only in
which projections carry a bias: Qwen2 always on q/k/v (never on o), Llama on q/k/v/o when `attention_bias`
and on the MLP when `mlp_bias`. Qwen2's sliding window is not implemented (refused by `check_llama_config`).

Rotary embeddings follow transformers' default rope (`rotate_half` convention, `rope_theta`, no scaling):
the inverse frequencies are float32 as transformers computes them, the phases position · frequency in
float32 inside the graph. Keys are rotated before they enter the cache, so a past of length P (a P-tuning
v2 prefix) holds keys used as they are, and the real tokens' positions start at P, as transformers numbers
them after a cache of that length. With grouped-query attention the cache, and so the prefix, holds the
`num_key_value_heads` key/value heads; each serves `num_attention_heads / num_key_value_heads` query heads.
"""

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ..layers import Dropout
from . import functional as F
from .cells import Embedding, Linear, empty_parameter
from ..device.kernels import device_kernels

LLAMA_MODEL_TYPES = ("llama", "qwen2")
_MEAN = ops.ReduceMean(keep_dims=True)
_CUMSUM = ops.CumSum()
_CUMSUM_FROM_END = ops.CumSum(reverse=True)


def head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def key_value_heads(config) -> int:
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def check_llama_config(config) -> list:
    """The settings of a Llama/Qwen2 config the native Cells do not implement, in words (empty: none);
    `convert.build_native` refuses a config with any."""
    unsupported = []
    if config.hidden_act != "silu":
        unsupported.append(f"hidden_act {config.hidden_act!r} (native: 'silu')")
    if getattr(config, "rope_scaling", None) is not None:
        unsupported.append(f"rope_scaling {config.rope_scaling!r} (native: None, transformers' default rope)")
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        unsupported.append(f"partial_rotary_factor {config.partial_rotary_factor} (native: 1.0)")
    if getattr(config, "use_sliding_window", False):
        unsupported.append("use_sliding_window=True (native: full attention)")
    if config.num_attention_heads % key_value_heads(config):
        unsupported.append(f"num_attention_heads {config.num_attention_heads} not a multiple of "
                           f"num_key_value_heads {key_value_heads(config)}")
    return unsupported


def rms_norm(x, weight, eps: float):
    """transformers' LlamaRMSNorm / Qwen2RMSNorm in float32: x / √(mean(x²) + eps) · weight."""
    flat = ops.reshape(x, (-1, x.shape[-1]))  # (N, H)
    scale = ops.rsqrt(ops.add(_MEAN(ops.square(flat), -1), eps))  # (N, 1)
    normed = ops.mul(flat, F.broadcast(scale, flat))
    return ops.reshape(ops.mul(normed, F.broadcast(weight, flat)), x.shape)


class RMSNorm(nn.Cell):
    compute_dtype = None

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = empty_parameter((hidden_size,), "weight")

    def construct(self, x):
        weight = self.weight if self.compute_dtype is None else ops.cast(self.weight, mstype.float32)
        return rms_norm(x, weight, self.eps)


def inverse_frequencies(config) -> Tensor:
    """(d/2,) float32: 1 / theta^(2i/d), in float32 as transformers' default rope computes it."""
    dim = head_dim(config)
    exponents = np.arange(0, dim, 2).astype(np.float32) / np.float32(dim)
    return Tensor(np.float32(1.0) / np.power(np.float32(config.rope_theta), exponents, dtype=np.float32))


def rotary_phases(position_ids, inverse_frequency, num_heads: int):
    """position_ids (B, T) → (cos, sin), each (B, heads, T, d): transformers' `cat(freqs, freqs)` layout."""
    positions = ops.expand_dims(ops.cast(position_ids, mstype.float32), -1)  # (B, T, 1)
    shape = position_ids.shape + (inverse_frequency.shape[0],)
    freqs = ops.mul(ops.broadcast_to(positions, shape), ops.broadcast_to(inverse_frequency, shape))  # (B, T, d/2)
    angles = ops.expand_dims(ops.concat((freqs, freqs), -1), 1)  # (B, 1, T, d)
    full = (angles.shape[0], num_heads, angles.shape[2], angles.shape[3])
    return ops.broadcast_to(ops.cos(angles), full), ops.broadcast_to(ops.sin(angles), full)


def rotate(x, cos, sin):
    """x · cos + rotate_half(x) · sin, rotate_half(x) = (−x₂, x₁) for the halves x₁, x₂ of the last axis.
    x, cos, sin (B, heads, T, d)."""
    first, second = ops.split(x, x.shape[-1] // 2, -1)
    return ops.add(ops.mul(x, cos), ops.mul(ops.concat((ops.neg(second), first), -1), sin))


def repeat_heads(x, repeats: int):
    """transformers' `repeat_kv`: (B, kv_heads, S, d) → (B, kv_heads · repeats, S, d), each head repeated in
    place (query heads h·repeats … h·repeats + repeats − 1 share key/value head h)."""
    if repeats == 1:
        return x
    batch, kv_heads, length, size = x.shape
    expanded = ops.broadcast_to(ops.expand_dims(x, 2), (batch, kv_heads, repeats, length, size))
    return ops.reshape(expanded, (batch, kv_heads * repeats, length, size))


def causal_mask(attention_mask, num_heads: int, query_length: int):
    """transformers' eager causal mask: (B, S) of 1/0 → additive (B, heads, T, S), 0 where query i (the last T
    of S positions) may see key j (j ≤ S − T + i and j not padding), float32 min elsewhere. A row that may
    see nothing (a left-padding query) is min throughout and so attends evenly over all S keys, as there."""
    batch, total = attention_mask.shape
    causal = ops.tril(ops.ones((query_length, total), mstype.float32), total - query_length)  # (T, S)
    return _additive(causal, attention_mask, num_heads)


def static_cache_mask(attention_mask, slot, num_heads: int):
    """One query against a fixed-size cache: (B, S) 1/0 (this token's slot included) and its one-hot slot (S,)
    → additive (B, heads, 1, S); later slots do not exist for transformers and are masked like padding."""
    reached = ops.expand_dims(_CUMSUM_FROM_END(ops.cast(slot, mstype.float32), 0), 0)  # (1, S): 1 up to the slot
    return _additive(reached, attention_mask, num_heads)


def _additive(causal, attention_mask, num_heads: int):
    """causal (T, S) 1/0 and padding (B, S) 1/0 → (B, heads, T, S): 0 where both allow, float32 min elsewhere."""
    batch, total = attention_mask.shape
    full = (batch, num_heads, causal.shape[0], total)
    keep = ops.expand_dims(ops.expand_dims(ops.cast(attention_mask, mstype.float32), 1), 1)  # (B, 1, 1, S)
    allowed = ops.mul(ops.broadcast_to(causal, full), ops.broadcast_to(keep, full))
    return ops.mul(ops.sub(1.0, allowed), F.FLOAT32_MIN)


class LlamaAttention(nn.Cell):
    compute_dtype = None

    def __init__(self, config):
        super().__init__()
        self.num_heads, self.num_kv_heads = config.num_attention_heads, key_value_heads(config)
        self.head_dim = head_dim(config)
        self.scale = self.head_dim ** -0.5  # transformers multiplies by it too
        qkv_bias = config.model_type == "qwen2" or getattr(config, "attention_bias", False)
        out_bias = config.model_type != "qwen2" and getattr(config, "attention_bias", False)
        hidden = config.hidden_size
        self.q_proj = Linear(hidden, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = Linear(hidden, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.v_proj = Linear(hidden, self.num_kv_heads * self.head_dim, bias=qkv_bias)
        self.o_proj = Linear(self.num_heads * self.head_dim, hidden, bias=out_bias)
        self.device_kernels = device_kernels()
        self.softmax = F.softmax(self.device_kernels, self.scale)
        self.attention_dropout = Dropout(getattr(config, "attention_dropout", 0.0))

    def construct(self, hidden, additive_mask, cos, sin, past_key, past_value, slot=None):
        """hidden (B, T, H); cos/sin (B, heads, T, d); past_key/value (B, kv_heads, S−T, d) or None →
        (output (B, T, H), key (B, kv_heads, S, d), value): the rotated keys and values so far, the cache.

        With `slot` ((1, 1, S, 1) bool, one True) the past is a fixed-size cache (B, kv_heads, S, d) and this
        token's key/value are written into that slot instead of appended."""
        query = F.split_heads(self.q_proj(hidden), self.num_heads, self.device_kernels)  # (B, heads, T, d)
        key = F.split_heads(self.k_proj(hidden), self.num_kv_heads, self.device_kernels)  # (B, kv_heads, T, d)
        value = F.split_heads(self.v_proj(hidden), self.num_kv_heads, self.device_kernels)
        query = rotate(query, cos, sin)
        kv_cos, kv_sin = ops.narrow(cos, 1, 0, self.num_kv_heads), ops.narrow(sin, 1, 0, self.num_kv_heads)
        key = rotate(key, kv_cos, kv_sin)
        if slot is not None:
            key = ops.where(F.broadcast(slot, past_key), F.broadcast(key, past_key), past_key)
            value = ops.where(F.broadcast(slot, past_value), F.broadcast(value, past_value), past_value)
        elif past_key is not None:
            key = ops.concat((past_key, key), 2)
            value = ops.concat((past_value, value), 2)
        repeats = self.num_heads // self.num_kv_heads
        context = F.attend(query, repeat_heads(key, repeats), repeat_heads(value, repeats), additive_mask,
                           self.scale, self.softmax, self.attention_dropout, self.compute_dtype)
        return self.o_proj(F.merge_heads(context, self.device_kernels)), key, value


class LlamaMLP(nn.Cell):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    def __init__(self, config):
        super().__init__()
        bias = getattr(config, "mlp_bias", False)
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def construct(self, x):
        gate = self.gate_proj(x)
        return self.down_proj(ops.mul(ops.mul(gate, ops.sigmoid(gate)), self.up_proj(x)))


class LlamaDecoderLayer(nn.Cell):
    """Pre-norm block: x + attn(input_layernorm(x)), then · + mlp(post_attention_layernorm(·))."""

    def __init__(self, config):
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def construct(self, hidden, additive_mask, cos, sin, past_key, past_value, slot=None):
        attended, key, value = self.self_attn(self.input_layernorm(hidden), additive_mask, cos, sin, past_key,
                                              past_value, slot)
        hidden = ops.add(hidden, attended)
        return ops.add(hidden, self.mlp(self.post_attention_layernorm(hidden))), key, value


class NativeLlama(nn.Cell):
    """The backbone interface over Llama / Qwen2 (see `ms_ptuning.native`), with GPT-2's decoding methods:
    `decode` continues from a key/value cache, `decode_static` writes into a fixed-size one. Prefix keys/values
    are (B, kv_heads, P, d), used as an already-filled cache (not rotated here)."""

    pooler = None  # a decoder has none

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.CellList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.inverse_frequency = inverse_frequencies(config)

    @property
    def transformer_layers(self):
        """The decoder layers, which `--gradient_checkpointing` recomputes (`native.recompute`)."""
        return self.layers

    @property
    def word_embedding_weight(self):
        """The (V, H) token embeddings, which a tied LM head multiplies by."""
        return self.embed_tokens.weight

    def drop_pooler(self) -> None:
        """Nothing to drop: a decoder has no pooler."""

    def embed_words(self, input_ids):
        return self.embed_tokens(input_ids)

    def pool(self, sequence_output):
        return None

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        """→ (hidden states (B, T, H) after the final norm, None); `prefix_key_values` are a past of length P:
        positions start at P and `attention_mask` (B, P+T) covers it. Llama has no token types."""
        if token_type_ids is not None:
            raise ValueError(f"{self.config.model_type} takes no token_type_ids")
        hidden, _ = self.forward_with_cache(input_ids, inputs_embeds, attention_mask, position_ids, prefix_key_values)
        return hidden, None

    def decode(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
               prefix_key_values=None):
        """Incremental decoding, `HFBackbone.decode`'s signature: `(hidden (B, T, H), cache)`, the cache L pairs
        (key, value) (B, kv_heads, S, d) of every position so far (a prefix, if any, first)."""
        past = prefix_key_values if cache is None else cache
        return self.forward_with_cache(input_ids, inputs_embeds, attention_mask, position_ids, past)

    def forward_with_cache(self, input_ids, inputs_embeds, attention_mask, position_ids, past_key_values):
        """→ (hidden (B, T, H), present_key_values: L pairs (B, kv_heads, S, d), the past then these T tokens).
        Default positions are transformers' `cache_position`: past length … past length + T − 1."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, steps = hidden.shape[0], hidden.shape[1]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if position_ids is None:
            position_ids = ops.add(_CUMSUM(ops.ones((batch, steps), mstype.float32), 1), float(past_length - 1))
        if attention_mask is None:
            attention_mask = ops.ones((batch, past_length + steps), mstype.float32)
        additive_mask = causal_mask(attention_mask, self.num_heads, steps)
        cos, sin = rotary_phases(position_ids, self.inverse_frequency, self.num_heads)
        presents = ()
        for index, layer in enumerate(self.layers):
            past = (None, None) if past_key_values is None else past_key_values[index]
            hidden, key, value = layer(hidden, additive_mask, cos, sin, past[0], past[1])
            presents = presents + ((key, value),)
        return self.norm(hidden), presents

    def decode_static(self, input_ids, position_ids, attention_mask, slot, past_key_values):
        """One token per row against fixed-size caches (`NativeGPT2.decode_static`'s contract): input_ids,
        position_ids (B, 1); attention_mask (B, S), 1 at the slots holding real tokens, this one included;
        slot (S,) one-hot; past_key_values L pairs (B, kv_heads, S, d) → (hidden (B, 1, H), updated caches)."""
        hidden = self.embed_tokens(input_ids)
        additive_mask = static_cache_mask(attention_mask, slot, self.num_heads)
        cos, sin = rotary_phases(position_ids, self.inverse_frequency, self.num_heads)
        slot = ops.reshape(ops.cast(slot, mstype.bool_), (1, 1, -1, 1))
        presents = ()
        for index, layer in enumerate(self.layers):
            hidden, key, value = layer(hidden, additive_mask, cos, sin, past_key_values[index][0],
                                       past_key_values[index][1], slot)
            presents = presents + ((key, value),)
        return self.norm(hidden), presents
