"""Reference of `ms_ptuning.models.base`: a head holds its prompted backbone under `encoder`."""

from torch import nn

from ...config import PTuningConfig
from ..modes import prompted_backbone


class PTuningHead(nn.Module):
    head_name = None

    def __init__(self, backbone, config: PTuningConfig, sequence_output_only: bool = False):
        super().__init__()
        self.encoder = prompted_backbone(backbone, config)
        if sequence_output_only:
            self.encoder.backbone.drop_pooler()

    @property
    def config(self) -> PTuningConfig:
        return self.encoder.config

    @property
    def init_std(self) -> float:
        return self.backbone.config.initializer_range

    @property
    def backbone(self):
        return self.encoder.backbone
