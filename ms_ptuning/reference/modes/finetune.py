from .base import PromptedBackbone


class Finetune(PromptedBackbone):
    """No virtual tokens."""
