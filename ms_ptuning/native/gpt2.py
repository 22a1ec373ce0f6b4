"""Native GPT-2: Hugging Face's `GPT2Model` (eager attention) as MindSpore Cells that GRAPH_MODE compiles,
with prefix keys/values (P-tuning v2) and a key/value cache for incremental decoding.

Parameter names and layouts are Hugging Face's (`wte.weight`, `h.0.attn.c_attn.weight` as Conv1D's (in, out),
`ln_f.weight`). Dropout sits where Hugging Face applies it: on the summed input embeddings (embd_pdrop), on the
attention probabilities (attn_pdrop) and after each block's two output projections (resid_pdrop).
"""

import math

from mindspore import dtype as mstype
from mindspore import nn, ops

from ..layers import Dropout, SharedMasks
from . import functional as F
from .cells import Conv1D, Embedding, LayerNorm
from ..device.kernels import device_kernels


class GPT2Attention(nn.Cell):
    compute_dtype = None  # float16 under mixed precision (native.precision)

    def __init__(self, config, layer_index: int):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        divisor = math.sqrt(hidden // self.num_heads) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            divisor *= layer_index + 1
        self.scale = 1.0 / divisor
        self.device_kernels = device_kernels()
        self.softmax = F.softmax(self.device_kernels, self.scale)
        self.c_attn = Conv1D(hidden, 3 * hidden)
        self.c_proj = Conv1D(hidden, hidden)
        self.attn_dropout = Dropout(config.attn_pdrop)
        self.resid_dropout = Dropout(config.resid_pdrop)

    def construct(self, hidden, batch: int, additive_mask, past_key, past_value, slot, dropout_masks):
        """hidden (B·T, H) rows; past_key/value (B, heads, S−T, d) or None →
        (output (B·T, H), key (B, heads, S, d), value): the keys/values so far, the next step's cache.
        dropout_masks: the masks (or Nones) of the attention probabilities and the output (`layers.SharedMasks`).

        With `slot` ((1, 1, S, 1) bool, one True) the past is a fixed-size cache (B, heads, S, d) and this one
        token's key/value are written into that slot instead of appended."""
        query, key, value = F.split_qkv_heads(self.c_attn(hidden), batch, self.num_heads, self.device_kernels)
        if slot is not None:
            key = ops.where(F.broadcast(slot, past_key), F.broadcast(key, past_key), past_key)
            value = ops.where(F.broadcast(slot, past_value), F.broadcast(value, past_value), past_value)
        elif past_key is not None:
            key = ops.concat((past_key, key), 2)
            value = ops.concat((past_value, value), 2)
        context = F.attend(query, key, value, additive_mask, self.scale, self.softmax, self.attn_dropout,
                           self.compute_dtype, dropout_masks[0])
        merged = F.flatten_rows(F.merge_heads(context, self.device_kernels))  # (B·T, H)
        return self.resid_dropout(self.c_proj(merged), dropout_masks[1]), key, value


class GPT2MLP(nn.Cell):
    def __init__(self, config):
        super().__init__()
        hidden = config.hidden_size
        inner = config.n_inner if config.n_inner is not None else 4 * hidden
        self.c_fc = Conv1D(hidden, inner)
        self.c_proj = Conv1D(inner, hidden)
        self.activation = F.activation(config.activation_function, device_kernels())
        self.bias_activation = F.bias_activation(config.activation_function, device_kernels())
        self.dropout = Dropout(config.resid_pdrop)

    def construct(self, hidden, dropout_mask):
        if self.bias_activation is None or self.c_fc.compute_dtype is not None:
            inner = self.activation(self.c_fc(hidden))
        else:
            inner = self.bias_activation(self.c_fc.product(hidden), self.c_fc.bias)
        return self.dropout(self.c_proj(inner), dropout_mask)


class GPT2Block(nn.Cell):
    """Pre-norm block: x + attn(ln_1(x)), then · + mlp(ln_2(·))."""

    def __init__(self, config, layer_index: int):
        super().__init__()
        hidden = config.hidden_size
        self.ln_1 = LayerNorm(hidden, config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_index)
        self.ln_2 = LayerNorm(hidden, config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def construct(self, hidden, batch: int, additive_mask, past_key, past_value, slot, dropout_masks):
        """hidden (B·T, H) rows of tokens, as every op but attention takes them (no reshapes around the
        linear layers) → (B·T, H), this block's key and value. dropout_masks: the masks (or Nones) of the
        attention probabilities, the attention output and the MLP output (`NativeGPT2.blocks`)."""
        attended, key, value = self.attn(self.ln_1(hidden), batch, additive_mask, past_key, past_value, slot,
                                         dropout_masks[:2])
        hidden = ops.add(attended, hidden)
        return ops.add(hidden, self.mlp(self.ln_2(hidden), dropout_masks[2])), key, value


class NativeGPT2(nn.Cell):
    """The backbone interface over GPT-2 (see `ms_ptuning.native`): `decode` continues from a key/value cache
    (`HFBackbone.decode`'s signature), `decode_static` writes into a fixed-size one."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.device_kernels = device_kernels()
        self.wte = Embedding(config.vocab_size, config.hidden_size)
        self.wpe = Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = Dropout(config.embd_pdrop)
        self.h = nn.CellList([GPT2Block(config, index) for index in range(config.num_hidden_layers)])
        self.ln_f = LayerNorm(config.hidden_size, config.layer_norm_epsilon)
        # the blocks' dropout masks drawn in two passes per step, not one per site (see layers.SharedMasks):
        # the (B, T, H) outputs of attention and MLP, and the attention probabilities
        self.resid_masks = SharedMasks([dropout for block in self.h for dropout in (block.attn.resid_dropout,
                                                                                     block.mlp.dropout)])
        self.probs_masks = SharedMasks([block.attn.attn_dropout for block in self.h])

    pooler = None  # GPT-2 has none

    @property
    def transformer_layers(self):
        """The blocks, which `--gradient_checkpointing` recomputes (`native.recompute`)."""
        return self.h

    @property
    def word_embedding_weight(self):
        """The (V, H) token embeddings, which the tied LM head multiplies by."""
        return self.wte.weight

    def drop_pooler(self) -> None:
        """Nothing to drop: GPT-2 has no pooler."""

    def embed_words(self, input_ids):
        return self.wte(input_ids)

    def pool(self, sequence_output):
        return None

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        """→ (hidden states (B, T, H) after ln_f, None); `prefix_key_values` are a past of length P:
        positions start at P and `attention_mask` (B, P+T) covers it."""
        hidden, _ = self.forward_with_cache(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids,
                                            prefix_key_values)
        return hidden, None

    def decode(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
               prefix_key_values=None):
        """Incremental decoding, `HFBackbone.decode`'s signature: `(hidden (B, T, H), cache)`. The first call
        passes no `cache` (a prefix, if any, as `prefix_key_values`), later ones the returned cache: L pairs
        (key, value) (B, heads, S, d) of every position so far."""
        past = prefix_key_values if cache is None else cache
        return self.forward_with_cache(input_ids, inputs_embeds, attention_mask, None, position_ids, past)

    def forward_with_cache(self, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids,
                           past_key_values):
        """→ (hidden (B, T, H), present_key_values): L pairs (key, value) (B, heads, S, d) of the past
        followed by these T tokens."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)
        batch, steps = inputs_embeds.shape[0], inputs_embeds.shape[1]
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        if position_ids is None:  # rows of the table: the lookup of positions past_length … past_length+T−1
            positions = F.broadcast(self.wpe.rows(past_length, steps), inputs_embeds, self.device_kernels)
        else:
            positions = self.wpe(position_ids)
        hidden = ops.add(inputs_embeds, positions)
        if token_type_ids is not None:
            hidden = ops.add(hidden, self.wte(token_type_ids))
        hidden = self.drop(F.flatten_rows(hidden))  # (B·T, H)
        if attention_mask is None:
            attention_mask = ops.ones((batch, past_length + steps), hidden.dtype)
        additive_mask = F.causal_padding_mask(attention_mask, self.num_heads, steps, self.device_kernels)
        return self.blocks(hidden, batch, additive_mask, past_key_values, None)

    def blocks(self, hidden, batch: int, additive_mask, past_key_values, slot):
        """The blocks and ln_f over (B·T, H) rows → (hidden (B, T, H), present_key_values), with the blocks'
        dropout masks drawn for all of them at once."""
        steps = hidden.shape[0] // batch
        if past_key_values is None:
            keys = steps
        else:  # a fixed-size cache already holds this token's slot
            keys = past_key_values[0][0].shape[2] + (0 if slot is not None else steps)
        resid_masks = self.resid_masks(hidden.shape, hidden.dtype)
        probs_masks = self.probs_masks((batch, self.num_heads, steps, keys), hidden.dtype)
        presents = ()
        for index, block in enumerate(self.h):
            past = (None, None) if past_key_values is None else past_key_values[index]
            hidden, key, value = block(hidden, batch, additive_mask, past[0], past[1], slot,
                                       (probs_masks[index], resid_masks[2 * index], resid_masks[2 * index + 1]))
            presents = presents + ((key, value),)
        return F.unflatten_rows(self.ln_f(hidden), batch), presents

    def decode_static(self, input_ids, position_ids, attention_mask, slot, past_key_values):
        """One token per row against fixed-size caches (what `GPT2StaticStep` compiles once per (B, S)).

        input_ids, position_ids (B, 1); attention_mask (B, S): 1 at the slots holding real tokens, this one
        included; slot (S,): one-hot, where this token goes; past_key_values: L pairs (B, heads, S, d) →
        (hidden (B, 1, H), the caches with this token written in)."""
        hidden = self.drop(F.flatten_rows(ops.add(self.wte(input_ids), self.wpe(position_ids))))  # (B, H)
        additive_mask = F.static_cache_mask(attention_mask, slot, self.num_heads, self.device_kernels)
        slot = ops.reshape(ops.cast(slot, mstype.bool_), (1, 1, -1, 1))
        return self.blocks(hidden, input_ids.shape[0], additive_mask, past_key_values, slot)


class GPT2Prefill(nn.Cell):
    """`NativeGPT2.decode` as a Cell, so GRAPH_MODE compiles it (once per shape): the prompt's forward pass
    that fills the cache before `GPT2StaticStep` takes over."""

    def __init__(self, model: NativeGPT2):
        super().__init__()
        self.model = model

    def construct(self, input_ids, attention_mask, position_ids, past_key_values):
        return self.model.decode(input_ids, None, attention_mask, position_ids, None, past_key_values)


class GPT2StaticStep(nn.Cell):
    """`NativeGPT2.decode_static` as a Cell, so GRAPH_MODE compiles a decoding step once per (B, S): op-by-op
    PyNative decoding of GPT-2-small measured over a second per token. Pass the cache as
    `mindspore.mutable(cache)`, or every step recompiles with the cache taken for a constant."""

    def __init__(self, model: NativeGPT2):
        super().__init__()
        self.model = model

    def construct(self, input_ids, position_ids, attention_mask, slot, past_key_values):
        return self.model.decode_static(input_ids, position_ids, attention_mask, slot, past_key_values)


def fixed_size_cache(present_key_values, size: int) -> tuple:
    """`decode`'s cache (L pairs (B, heads, S0, d)) zero-padded to `size` ≥ S0 slots for `GPT2StaticStep`."""
    def pad(tensor):
        batch, heads, filled, head_dim = tensor.shape
        if size == filled:
            return tensor
        return ops.concat((tensor, ops.zeros((batch, heads, size - filled, head_dim), tensor.dtype)), 2)
    return tuple((pad(key), pad(value)) for key, value in present_key_values)
