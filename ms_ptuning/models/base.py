"""The head contract, as peft's PeftModel owns its peft_config: a head holds its prompted backbone under
`encoder` and its PTuningConfig is read there (`head.config`) and nowhere else."""

from mindspore import nn

from ..config import PTuningConfig
from ..modes import PromptedBackbone, prompted_backbone
from ..modes.base import initializer_range


class PTuningHead(nn.Cell):
    """Base of every task head. `head_name` is its key in the registry (`ms_ptuning.models.HEADS`) and in
    adapter configs. `construct(**batch)` returns `(loss or None, outputs)`.

    `sequence_output_only`: the head never reads the pooled output, so the backbone's pooler is removed
    (as Hugging Face builds BERT for token classification and QA). `compute_dtype`: float16 / bfloat16
    for mixed precision, None for float32.
    """

    head_name = None

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None, sequence_output_only: bool = False):
        super().__init__()
        self.encoder: PromptedBackbone = prompted_backbone(backbone, config, compute_dtype)
        if sequence_output_only:
            self.encoder.backbone.drop_pooler()

    @property
    def config(self) -> PTuningConfig:
        return self.encoder.config

    @property
    def init_std(self) -> float:
        """The head's Linear layers start at N(0, initializer_range) with zero biases: THUDM's heads are
        missing from the checkpoint, so transformers' `from_pretrained` initialises them that way."""
        return initializer_range(self.backbone.config)

    @property
    def backbone(self):
        """The backbone behind the Backbone interface (`ms_ptuning.hf_backbone`)."""
        return self.encoder.backbone
