"""DeBERTa's pooler for heads that classify a whole sequence (DeBERTa models have none of their own)."""

import math

import numpy as np
from mindspore import Tensor, nn, ops

from ..deberta_prefix import DEBERTA_MODEL_TYPES
from ..layers import Dropout, Linear


def _gelu(x):
    # exact (erf) GELU, Hugging Face's "gelu"; `ops.gelu(approximate="none")` is built from Tensor operators
    return ops.mul(ops.mul(x, 0.5), ops.add(ops.erf(ops.mul(x, 1.0 / math.sqrt(2.0))), 1.0))


ACTIVATIONS = {"gelu": _gelu, "tanh": ops.tanh, "relu": ops.relu}


class ContextPooler(nn.Cell):
    """Hugging Face's DeBERTa `ContextPooler`: first token → dropout(pooler_dropout) → Linear(H, H) →
    `pooler_hidden_act`."""

    def __init__(self, model_config):
        super().__init__()
        if model_config.pooler_hidden_act not in ACTIVATIONS:
            raise ValueError(f"backbone config field pooler_hidden_act={model_config.pooler_hidden_act!r} is not "
                             f"supported; use one of {sorted(ACTIVATIONS)}")
        if model_config.pooler_hidden_size != model_config.hidden_size:
            raise ValueError(f"backbone config field pooler_hidden_size={model_config.pooler_hidden_size} must equal "
                             f"hidden_size={model_config.hidden_size}")
        self.dense = Linear(model_config.hidden_size, model_config.hidden_size, std=model_config.initializer_range)
        self.dropout = Dropout(model_config.pooler_dropout)
        self.activation = ACTIVATIONS[model_config.pooler_hidden_act]
        self.first_position = Tensor(np.array(0, dtype=np.int32))

    def construct(self, sequence_output):
        first_token = ops.gather(sequence_output, self.first_position, 1)  # (B, T, H) → (B, H)
        return self.activation(self.dense(self.dropout(first_token)))


def pooler_for(backbone):
    """The pooler a sequence-level head adds on top of `backbone` (the Backbone interface): None when the
    backbone pools itself (BERT, RoBERTa), a `ContextPooler` for DeBERTa, an error otherwise."""
    if backbone.pooler is not None:
        return None
    if backbone.config.model_type in DEBERTA_MODEL_TYPES:
        return ContextPooler(backbone.config)
    raise ValueError(f"{type(backbone).__name__} has no pooler; sequence-level heads need one "
                     f"(or a DeBERTa backbone, which gets a ContextPooler)")
