"""Native BERT and RoBERTa encoders: Hugging Face's `BertModel` / `RobertaModel` (eager attention, absolute
positions) as MindSpore Cells that GRAPH_MODE compiles, with per-layer prefix keys/values (P-tuning v2).

The Cell tree mirrors Hugging Face's module tree, so parameter names are Hugging Face's
(`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, `pooler.dense.weight`).
Dropout sits where Hugging Face applies it: after the embedding LayerNorm, on the attention probabilities and
after each of the two output projections (before their residual LayerNorm).
"""

import math

from mindspore import nn, ops
from mindspore import dtype as mstype

from ..layers import Dropout, SharedMasks
from . import functional as F
from .cells import Embedding, LayerNorm, Linear
from ..device.kernels import device_kernels


class BertEmbeddings(nn.Cell):
    """(word or given input embeddings) + token type + position → LayerNorm → dropout.

    `position_padding_idx`: RoBERTa's position table, like its word table, never trains its padding row."""

    def __init__(self, config, position_padding_idx: int = None):
        super().__init__()
        hidden = config.hidden_size
        self.word_embeddings = Embedding(config.vocab_size, hidden, config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, hidden, position_padding_idx)
        self.token_type_embeddings = Embedding(config.type_vocab_size, hidden)
        self.LayerNorm = LayerNorm(hidden, config.layer_norm_eps)  # Hugging Face's (TensorFlow's) spelling
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.device_kernels = device_kernels()

    def construct(self, inputs_embeds, token_type_ids, position_ids, first_position: int, dropout_mask):
        """inputs_embeds (B, T, H); token types and positions (B, T) ids or None; None positions are
        first_position … first_position+T−1 and None token types are 0, as Hugging Face's buffers give them;
        dropout_mask: the dropout's (B·T, H) mask or None (see `layers.SharedMasks`) → (B·T, H) rows."""
        steps = inputs_embeds.shape[1]
        if token_type_ids is None:  # row 0 for every token: the lookup of all-zero ids
            token_types = F.broadcast(self.token_type_embeddings.rows(0, 1), inputs_embeds, self.device_kernels)
        else:
            token_types = self.token_type_embeddings(token_type_ids)
        embeddings = ops.add(inputs_embeds, token_types)
        if position_ids is None:
            positions = F.broadcast(self.position_embeddings.rows(first_position, steps), inputs_embeds,
                                    self.device_kernels)
        else:
            positions = self.position_embeddings(position_ids)
        embeddings = ops.reshape(ops.add(embeddings, positions), (-1, inputs_embeds.shape[-1]))
        return self.dropout(self.LayerNorm(embeddings), dropout_mask)


class BertSelfAttention(nn.Cell):
    """query/key/value projections; a layer's prefix keys/values go in front of its own.

    `qkv`: with the devices' kernels, the three projections' weights side by side ((3H, H), (3H,), built for
    all layers at once by `BertEncoder.fused_qkv`), one product split into heads by one reshape + transpose +
    unstack; None (CPU) three products split by split/stack."""

    compute_dtype = None  # float16 under mixed precision (native.precision)

    def __init__(self, config):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = 1.0 / math.sqrt(hidden // self.num_heads)
        self.query = Linear(hidden, hidden)
        self.key = Linear(hidden, hidden)
        self.value = Linear(hidden, hidden)
        self.device_kernels = device_kernels()
        self.softmax = F.softmax(self.device_kernels, self.scale)
        self.dropout = Dropout(config.attention_probs_dropout_prob)
        (self.cpu_attention, self.cpu_prefix_attention, self.cpu_training_attention,
         self.cpu_prefix_training_attention) = F.cpu_attentions(self.scale, self.device_kernels)

    def construct(self, hidden, batch: int, additive_mask, prefix_key, prefix_value, probs_mask, qkv):
        # hidden (B·T, H) rows; additive_mask (B, heads, T, P+T) (devices' kernels: (B, 1, 1, P+T)) or None;
        # prefix_key/value (B, heads, P, d) or None; probs_mask: the attention dropout's (B, heads, T, P+T)
        # mask or None → (B·T, H)
        if (self.cpu_attention is not None and self.compute_dtype is None and hidden.dtype == mstype.float32
                and additive_mask is not None
                and additive_mask.shape[:3] == (batch, self.num_heads, hidden.shape[0] // batch)):
            keep = self.dropout.mask(additive_mask, probs_mask)  # None outside training or without dropout
            if not self.training or keep is not None:
                return self.rows_attention(hidden, additive_mask, prefix_key, prefix_value, keep)
        if qkv is not None:
            query, key, value = F.split_qkv_heads(F.linear(hidden, qkv[0], qkv[1], self.compute_dtype), batch,
                                                  self.num_heads, True)
        else:
            query = F.split_heads(F.unflatten_rows(self.query(hidden), batch), self.num_heads)
            key = F.split_heads(F.unflatten_rows(self.key(hidden), batch), self.num_heads)
            value = F.split_heads(F.unflatten_rows(self.value(hidden), batch), self.num_heads)
        if prefix_key is not None:
            key = ops.concat((prefix_key, key), 2)  # (B, heads, P+T, d)
            value = ops.concat((prefix_value, value), 2)
        context = F.attend(query, key, value, additive_mask, self.scale, self.softmax, self.dropout,
                           self.compute_dtype, probs_mask)
        return F.flatten_rows(F.merge_heads(context, self.device_kernels))  # (B·T, H)

    def rows_attention(self, hidden, additive_mask, prefix_key, prefix_value, keep):
        """The CPU's attention kernels over the projections' rows (`F.CpuAttention`), float32; keep: the
        probabilities' dropout mask in training."""
        rows = self.query(hidden), self.key(hidden), self.value(hidden)
        if keep is None:
            if prefix_key is None:
                return self.cpu_attention(*rows, additive_mask)
            return self.cpu_prefix_attention(*rows, prefix_key, prefix_value, additive_mask)
        if prefix_key is None:
            return self.cpu_training_attention(*rows, additive_mask, keep)[0]
        return self.cpu_prefix_training_attention(*rows, prefix_key, prefix_value, additive_mask, keep)[0]


class BertResidualOutput(nn.Cell):
    """dense → dropout → LayerNorm(· + residual): Hugging Face's BertSelfOutput and BertOutput. On CPU in float32
    the dense layer's bias, the dropout, the residual and the LayerNorm are one kernel each way
    (`F.CpuResidualLayerNorm`, the same float operations as the four kernels)."""

    def __init__(self, config, in_features: int):
        super().__init__()
        self.dense = Linear(in_features, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        fused = self.LayerNorm.cpu_kernel is not None
        self.residual_norm = F.CpuResidualLayerNorm(config.layer_norm_eps) if fused else None
        self.masked_residual_norm = F.CpuMaskedResidualLayerNorm(config.layer_norm_eps) if fused else None

    def construct(self, hidden, residual, dropout_mask):
        # hidden (B·T, in) rows, residual (B·T, H) → (B·T, H)
        if self.residual_norm is None or self.dense.compute_dtype is not None or residual.dtype != mstype.float32:
            return self.LayerNorm(ops.add(self.dropout(self.dense(hidden), dropout_mask), residual))
        product = self.dense.product(hidden)
        mask = self.dropout.mask(product, dropout_mask)
        if mask is None:
            return self.residual_norm(product, self.dense.bias, residual, self.LayerNorm.weight,
                                      self.LayerNorm.bias)[0]
        return self.masked_residual_norm(product, self.dense.bias, mask, residual, self.LayerNorm.weight,
                                         self.LayerNorm.bias)[0]


class BertAttention(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertResidualOutput(config, config.hidden_size)

    def construct(self, hidden, batch: int, additive_mask, prefix_key, prefix_value, probs_mask, output_mask, qkv):
        return self.output(self.self(hidden, batch, additive_mask, prefix_key, prefix_value, probs_mask, qkv),
                           hidden, output_mask)


class BertIntermediate(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.activation = F.activation(config.hidden_act, device_kernels())
        self.bias_activation = F.bias_activation(config.hidden_act, device_kernels())

    def construct(self, hidden):
        # hidden (B·T, H) rows → (B·T, intermediate)
        if self.bias_activation is None or self.dense.compute_dtype is not None:
            return self.activation(self.dense(hidden))
        return self.bias_activation(self.dense.product(hidden), self.dense.bias)


class BertLayer(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def construct(self, hidden, batch: int, additive_mask, prefix_key, prefix_value, dropout_masks, qkv):
        """hidden (B·T, H) rows of tokens, as every op but attention takes them (no reshapes around the linear
        layers) → (B·T, H). dropout_masks: the masks (or Nones) of the attention probabilities, the attention
        output and the output, computed for all layers at once (`NativeBert.construct`); qkv: this layer's
        fused q/k/v weight and bias or None (`BertEncoder.fused_qkv`)."""
        probs_mask, attention_mask, output_mask = dropout_masks
        attended = self.attention(hidden, batch, additive_mask, prefix_key, prefix_value, probs_mask,
                                  attention_mask, qkv)
        return self.output(self.intermediate(attended), attended, output_mask)


class BertEncoder(nn.Cell):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.CellList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        self.device_kernels = device_kernels()

    def construct(self, hidden, batch: int, additive_mask, prefix_key_values, dropout_masks):
        """hidden (B·T, H) rows → (B·T, H); dropout_masks: per layer its three (see `BertLayer`)."""
        qkv = self.fused_qkv()
        for index, layer in enumerate(self.layer):
            if prefix_key_values is None:
                hidden = layer(hidden, batch, additive_mask, None, None, dropout_masks[index], qkv[index])
            else:
                hidden = layer(hidden, batch, additive_mask, prefix_key_values[index][0],
                               prefix_key_values[index][1], dropout_masks[index], qkv[index])
        return hidden

    def fused_qkv(self):
        """Per layer its query, key and value weights side by side, ((3H, H), (3H,)), with the devices'
        kernels; Nones on CPU. One Stack of every layer's weights (and one of the biases) per step: MindSpore
        2.7's backend compiled a concatenation of the three Parameters in each layer for minutes instead of
        seconds (a 6-layer train graph), and this is also fewer kernels."""
        layers = len(self.layer)
        if not self.device_kernels:
            return (None,) * layers
        weights, biases = (), ()
        for layer in self.layer:
            attention = layer.attention.self
            weights = weights + (attention.query.weight, attention.key.weight, attention.value.weight)
            biases = biases + (attention.query.bias, attention.key.bias, attention.value.bias)
        hidden = weights[0].shape[1]
        fused_weights = ops.unstack(ops.reshape(ops.stack(weights, 0), (layers, 3 * hidden, hidden)), 0)
        fused_biases = ops.unstack(ops.reshape(ops.stack(biases, 0), (layers, 3 * hidden)), 0)
        return tuple((fused_weights[index], fused_biases[index]) for index in range(layers))


class BertPooler(nn.Cell):
    """tanh(dense(hidden state of the first token))."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def construct(self, sequence_output):
        first = ops.squeeze(ops.narrow(sequence_output, 1, 0, 1), 1)  # (B, H)
        return ops.tanh(self.dense(first))


class NativeBert(nn.Cell):
    """The backbone interface over a BERT encoder (see `ms_ptuning.native`)."""

    padded_positions = False  # whether position ids can be the padding id (RoBERTa)
    compute_dtype = None  # float32 throughout (the Backbone interface's precision; see hf_backbone)

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.device_kernels = device_kernels()
        self.embeddings = BertEmbeddings(config, config.pad_token_id if self.padded_positions else None)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        # every dropout site's mask drawn in two passes per step, not one per site: the (B, T, H) sites
        # (embeddings, then per layer attention output and output) and the attention probabilities
        layers = self.encoder.layer
        self.hidden_masks = SharedMasks([self.embeddings.dropout] + [dropout for layer in layers for dropout in (
            layer.attention.output.dropout, layer.output.dropout)])
        self.probs_masks = SharedMasks([layer.attention.self.dropout for layer in layers])

    @property
    def transformer_layers(self):
        """The encoder layers, which `--gradient_checkpointing` recomputes (`native.recompute`)."""
        return self.encoder.layer

    @property
    def word_embedding_weight(self):
        """The (V, H) input embedding, which tied output layers (BERT's MLM decoder) multiply by."""
        return self.embeddings.word_embeddings.weight

    def drop_pooler(self) -> None:
        """Remove the pooler, as Hugging Face builds BERT for token classification and QA: its weights would
        otherwise count, and in finetune mode train, without ever receiving a gradient."""
        self.pooler = None

    def embed_words(self, input_ids):
        """(B, T) ids → (B, T, H) word embeddings alone."""
        return self.embeddings.word_embeddings(input_ids)

    def pool(self, sequence_output):
        """(B, T, H) → (B, H), or None without a pooler."""
        return None if self.pooler is None else self.pooler(sequence_output)

    def default_positions(self, input_ids, past_length: int):
        """None: BERT's positions past_length … past_length+T−1 (a slice of the table, no lookup)."""
        return None

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        """→ (sequence_output (B, T, H), pooled (B, H) or None); `attention_mask` (B, P+T) covers the prefix."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        past_length = 0 if prefix_key_values is None else prefix_key_values[0][0].shape[2]
        if position_ids is None and input_ids is not None:
            position_ids = self.default_positions(input_ids, past_length)
        if inputs_embeds is None:
            inputs_embeds = self.embed_words(input_ids)
        batch, steps = inputs_embeds.shape[0], inputs_embeds.shape[1]
        hidden_masks = self.hidden_masks((batch * steps, inputs_embeds.shape[2]), inputs_embeds.dtype)
        probs_masks = self.probs_masks((batch, self.num_heads, steps, past_length + steps), inputs_embeds.dtype)
        layer_masks = tuple((probs_masks[index], hidden_masks[1 + 2 * index], hidden_masks[2 + 2 * index])
                            for index in range(len(probs_masks)))
        hidden = self.embeddings(inputs_embeds, token_type_ids, position_ids, self.first_position(past_length),
                                 hidden_masks[0])
        additive_mask = None if attention_mask is None else F.padding_mask(attention_mask, self.num_heads, steps,
                                                                           self.device_kernels)
        rows = self.encoder(hidden, batch, additive_mask, prefix_key_values, layer_masks)  # (B·T, H)
        sequence_output = F.unflatten_rows(rows, batch)
        return sequence_output, self.pool(sequence_output)

    def first_position(self, past_length: int) -> int:
        """The first default position when no ids say otherwise: BERT counts on from a prefix/cache."""
        return past_length


class NativeRoberta(NativeBert):
    """RoBERTa: BERT's encoder with fairseq positions that count real tokens from padding_idx + 1."""

    padded_positions = True

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer)
        self.padding_idx = config.pad_token_id

    def default_positions(self, input_ids, past_length: int):
        """Hugging Face's create_position_ids_from_input_ids: padding keeps padding_idx, the k-th real token
        gets padding_idx + past_length + k."""
        real = ops.cast(ops.ne(input_ids, self.padding_idx), mstype.int32)
        counted = ops.mul(ops.add(ops.cumsum(real, 1), past_length), real)
        return ops.add(ops.cast(counted, mstype.int64), self.padding_idx)

    def first_position(self, past_length: int) -> int:
        """Given embeddings (no ids), Hugging Face numbers them padding_idx+1 … whatever the past length."""
        return self.padding_idx + 1
