"""P-tuning v1 prompt encoder: continuous prompt embeddings produced by a small network."""

import numpy as np
from mindspore import Tensor, nn, ops

from ..layers import Embedding, LSTM, Linear
from .folding import FoldableEncoder


class PromptEncoder(FoldableEncoder):
    """`lstm`: Embedding(n, H) → 2-layer bidirectional LSTM(H, H/2) → Linear(H, H) → ReLU → Linear(H, H);
    `mlp`: the same without the LSTM; `embedding`: the table alone (the reference's shallow `--prompt`).

    `construct()` takes no input and returns the (n, H) prompt embeddings, like the reference.
    `table_std`: the table starts at N(0, table_std) (torch's default 1; THUDM's v2 table gets the backbone's
    initializer_range); the LSTM and MLP keep torch's defaults, as in P-tuning v1.
    """

    def __init__(self, num_virtual_tokens: int, hidden_size: int, encoder_type: str = "lstm",
                 table_std: float = 1.0):
        super().__init__()
        if encoder_type == "lstm" and hidden_size % 2:
            raise ValueError(f"the bidirectional LSTM needs an even hidden_size, got {hidden_size}")
        self.encoder_type = encoder_type
        self.embedding = Embedding(num_virtual_tokens, hidden_size, table_std)
        if encoder_type == "lstm":
            self.lstm = LSTM(hidden_size, hidden_size // 2, num_layers=2, bidirectional=True)
        if encoder_type in ("lstm", "mlp"):
            self.mlp = nn.CellList([Linear(hidden_size, hidden_size), Linear(hidden_size, hidden_size)])
        self.positions = Tensor(np.arange(num_virtual_tokens, dtype=np.int32))
        self.compiles = self.has_network()

    def has_network(self) -> bool:
        # the LSTM compiles its own steps: the whole unrolled loop as one graph costs ~900 MB of memory
        return self.encoder_type == "mlp"

    def construct(self):
        return self.output()

    def encode(self):
        prompts = self.embedding(self.positions)  # (n, H)
        if self.encoder_type == "lstm":
            prompts = ops.squeeze(self.lstm(ops.expand_dims(prompts, 0)), 0)
        if self.encoder_type in ("lstm", "mlp"):
            prompts = self.mlp[1](ops.relu(self.mlp[0](prompts)))
        return prompts
