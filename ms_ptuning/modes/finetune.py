"""Fine-tuning: the empty mode. The backbone runs on the real tokens as they are and trains with the head."""

from .base import PromptedBackbone


class Finetune(PromptedBackbone):
    """No virtual tokens: `PromptedBackbone`'s defaults pass the inputs through and keep the outputs."""
