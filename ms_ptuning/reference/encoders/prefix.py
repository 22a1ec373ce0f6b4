"""Reference P-tuning v2 prefix encoder, parameter for parameter `ms_ptuning.encoders.prefix`."""

import torch
from torch import nn

from ..layers import embedding, linear


class PrefixEncoder(nn.Module):
    def __init__(self, pre_seq_len, num_layers, num_heads, hidden_size, projection=False,
                 projection_hidden_size=512, dropout=0.0, init_std=None):
        super().__init__()
        self.pre_seq_len, self.num_layers, self.num_heads = pre_seq_len, num_layers, num_heads
        self.head_dim = hidden_size // num_heads
        self.projection = projection
        out_size = 2 * num_layers * hidden_size
        if projection:
            self.embedding = embedding(pre_seq_len, hidden_size, init_std)
            self.transform = nn.ModuleList([linear(hidden_size, projection_hidden_size, init_std),
                                            linear(projection_hidden_size, out_size, init_std)])
        else:
            self.embedding = embedding(pre_seq_len, out_size, init_std)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("positions", torch.arange(pre_seq_len), persistent=False)

    def forward(self, batch_size):
        table = self.embedding(self.positions)
        if self.projection:
            table = self.transform[1](torch.tanh(self.transform[0](table)))
        prefix = table.unsqueeze(0).expand(batch_size, -1, -1)
        prefix = prefix.reshape(batch_size, self.pre_seq_len, 2 * self.num_layers, self.num_heads, self.head_dim)
        return self.dropout(prefix).permute(2, 0, 3, 1, 4)
