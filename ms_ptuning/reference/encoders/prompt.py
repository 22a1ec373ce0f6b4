"""Reference P-tuning v1 prompt encoder, parameter for parameter `ms_ptuning.encoders.prompt`."""

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import embedding


class PromptEncoder(nn.Module):
    def __init__(self, num_virtual_tokens, hidden_size, encoder_type="lstm", table_std=None):
        super().__init__()
        self.encoder_type = encoder_type
        self.embedding = embedding(num_virtual_tokens, hidden_size, table_std)
        if encoder_type == "lstm":
            self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=2, bidirectional=True, batch_first=True)
        if encoder_type in ("lstm", "mlp"):
            self.mlp = nn.ModuleList([nn.Linear(hidden_size, hidden_size), nn.Linear(hidden_size, hidden_size)])
        self.register_buffer("positions", torch.arange(num_virtual_tokens), persistent=False)

    def forward(self):
        prompts = self.embedding(self.positions)
        if self.encoder_type == "lstm":
            prompts = self.lstm(prompts.unsqueeze(0))[0].squeeze(0)
        if self.encoder_type in ("lstm", "mlp"):
            prompts = self.mlp[1](F.relu(self.mlp[0](prompts)))
        return prompts
