"""The modes: each owns how its virtual tokens enter the backbone (`prefix`, `prompt`) or that none do
(`finetune`). `prompted_backbone` builds the one a PTuningConfig asks for."""

from ..config import PTuningConfig
from .base import PromptedBackbone
from .finetune import Finetune
from .prefix import PrefixTuning
from .prompt import PromptTuning

MODE_CLASSES = {"prefix": PrefixTuning, "prompt": PromptTuning, "finetune": Finetune}


def prompted_backbone(backbone, config: PTuningConfig, compute_dtype=None) -> PromptedBackbone:
    """`backbone` (a mindnlp model or a Cell with the Backbone interface) in `config.mode`; `compute_dtype`
    (float16 / bfloat16, None for float32) is the precision the frozen backbone computes in."""
    return MODE_CLASSES[config.mode](backbone, config, compute_dtype)


__all__ = ["MODE_CLASSES", "PromptedBackbone", "Finetune", "PrefixTuning", "PromptTuning", "prompted_backbone"]
