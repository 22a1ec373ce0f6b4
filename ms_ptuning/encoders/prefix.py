"""P-tuning v2 prefix encoder: trainable key/value prefixes for every attention layer."""

import numpy as np
from mindspore import Tensor, nn, ops

from ..layers import Dropout, Embedding, Linear
from .folding import FoldableEncoder


class PrefixEncoder(FoldableEncoder):
    """`Embedding(P, 2·L·H)`, or with `projection`: `Embedding(P, H) → Linear(H, h) → Tanh → Linear(h, 2·L·H)`.

    `construct(batch_size)` returns a (2·L, batch, heads, P, head_dim) tensor: rows 2l and 2l+1 are the key
    and value prefixes of layer l, laid out as the attention cache expects them. The reference applies
    dropout (`hidden_dropout_prob`) to the prefix before splitting it into layers; `dropout` reproduces it.
    `init_std`: tables and Linear weights start at N(0, init_std) with zero biases, as THUDM's do (the
    backbone's `initializer_range`); None keeps torch's defaults (N(0, 1) tables, uniform Linear).
    """

    def __init__(self, pre_seq_len: int, num_layers: int, num_heads: int, hidden_size: int,
                 projection: bool = False, projection_hidden_size: int = 512, dropout: float = 0.0,
                 init_std: float | None = None):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.pre_seq_len = pre_seq_len
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.projection = projection
        out_size = 2 * num_layers * hidden_size
        table_std = 1.0 if init_std is None else init_std
        if projection:
            self.embedding = Embedding(pre_seq_len, hidden_size, table_std)
            self.transform = nn.CellList([Linear(hidden_size, projection_hidden_size, std=init_std),
                                          Linear(projection_hidden_size, out_size, std=init_std)])
        else:
            self.embedding = Embedding(pre_seq_len, out_size, table_std)
        self.dropout = Dropout(dropout)
        # Built once: the prefix positions are constant (and ops.arange is unusable after `import mindnlp`).
        self.positions = Tensor(np.arange(pre_seq_len, dtype=np.int32))
        self.compiles = self.has_network()

    def has_network(self) -> bool:
        return self.projection

    def encode(self):
        """(P, 2·L·H): the encoder output before batching, constant once training is over."""
        table = self.embedding(self.positions)
        if self.projection:
            table = self.transform[1](ops.tanh(self.transform[0](table)))
        return table

    def construct(self, batch_size: int):
        table = self.output()
        prefix = ops.broadcast_to(ops.expand_dims(table, 0), (batch_size,) + table.shape)
        prefix = ops.reshape(prefix, (batch_size, self.pre_seq_len, 2 * self.num_layers, self.num_heads, self.head_dim))
        prefix = self.dropout(prefix)
        return ops.transpose(prefix, (2, 0, 3, 1, 4))  # (2L, B, heads, P, head_dim)

