"""Torch layers initialised as `ms_ptuning.layers` initialises them: torch's defaults, or with `std` Hugging
Face's `_init_weights` (weights N(0, std), biases 0), which THUDM's P-tuning v2 modules get."""

from torch import nn


def linear(in_features: int, out_features: int, std: float | None = None) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    if std is not None:
        nn.init.normal_(layer.weight, std=std)
        nn.init.zeros_(layer.bias)
    return layer


def embedding(num_embeddings: int, embedding_dim: int, std: float | None = None) -> nn.Embedding:
    layer = nn.Embedding(num_embeddings, embedding_dim)  # torch's N(0, 1)
    if std is not None:
        nn.init.normal_(layer.weight, std=std)
    return layer


def normal_linears(module: nn.Module, std: float) -> None:
    """Every nn.Linear inside `module` (a Hugging Face head built on its own, which gets torch's defaults) →
    N(0, std) weights and zero biases, as `_init_weights` leaves it."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
