from ...config import PTuningConfig
from .base import PromptedBackbone
from .finetune import Finetune
from .prefix import PrefixTuning
from .prompt import PromptTuning

MODE_CLASSES = {"prefix": PrefixTuning, "prompt": PromptTuning, "finetune": Finetune}


def prompted_backbone(backbone, config: PTuningConfig) -> PromptedBackbone:
    return MODE_CLASSES[config.mode](backbone, config)
