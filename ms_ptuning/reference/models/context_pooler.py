"""DeBERTa's heads pool with Hugging Face's own torch ContextPooler."""

from transformers.models.deberta.modeling_deberta import ContextPooler

from ...deberta_prefix import DEBERTA_MODEL_TYPES
from ..layers import normal_linears


def pooler_for(backbone):
    """None for backbones with a pooler; a ContextPooler for DeBERTa."""
    if backbone.pooler is not None:
        return None
    if backbone.config.model_type in DEBERTA_MODEL_TYPES:
        pooler = ContextPooler(backbone.config)
        normal_linears(pooler, backbone.config.initializer_range)
        return pooler
    raise ValueError(f"{type(backbone.model).__name__} has no pooler")
