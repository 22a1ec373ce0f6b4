"""Mixed precision (`--mixed_precision no|fp16|bf16`): the frozen backbone computes in a low dtype, what
trains stays float32.

Under fp16/bf16 a head is built with `compute_dtype=mixed_precision_dtype(name)` (`ms_ptuning.hf_backbone`):
  - its backbone runs under MindSpore's automatic mixed precision (mindtorch's `torch.autocast`, MindSpore's
    amp level "auto"): MatMul, BatchMatMul and Dense in the low dtype, Softmax, LayerNorm, Exp/Log and the
    losses in float32. Its outputs are cast back to float32, so heads, logits and losses stay float32;
  - the frozen backbone weights are stored in the low dtype: they never update, so they need no float32
    master copy. The input embedding is the exception, because tied heads (GPT-2's LM head, BERT's MLM
    decoder) multiply by it in float32 outside the backbone;
  - trainable weights (the prefix/prompt encoder, the heads, and the backbone when fine-tuning) and the AdamW
    moments stay float32: they are the master weights.
`mindspore.amp.auto_mixed_precision` cannot do this: it walks MindSpore Cells only, so it reaches our small
encoders and heads and never the mindtorch backbone.

fp16 gradients underflow (below 6e-8) and overflow (above 65504): `LossScaler` multiplies the loss before
the backward pass and divides the gradients after it, with torch.cuda.amp.GradScaler's dynamic rule.
"""

import math

import mindspore
import numpy as np
from mindspore import ops

PRECISIONS = {"no": None, "fp16": mindspore.float16, "bf16": mindspore.bfloat16}
SCALER_KINDS = ("none", "static", "dynamic")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def compute_dtype(name: str):
    """The low dtype of `--mixed_precision name`, None for "no" (float32)."""
    if name not in PRECISIONS:
        raise ValueError(f"--mixed_precision must be one of {tuple(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]


def check_device_kernels(name: str, dtype) -> None:
    """Run a tiny MatMul → Mul in `dtype` on the current device: MindSpore 2.7 has float16 kernels on CPU but
    no bfloat16 MatMul, Softmax or Mul there, and which GPUs have bfloat16 kernels depends on the build."""
    device = mindspore.get_context("device_target")
    # Synchronously: a kernel that fails in PyNative's asynchronous pipeline leaves its error pending, and a
    # later, unrelated op raised it (11 of 30 refused probes broke the next tensor creation; synchronously 0
    # of 70, though under heavy load it was seen once more: a refusal is best followed by the process ending).
    asynchronous = not mindspore.get_context("pynative_synchronize")
    mindspore.set_context(pynative_synchronize=True)
    try:
        probe = ops.ones((2, 2), dtype)
        ops.cast(ops.mul(ops.matmul(probe, probe), probe), mindspore.float32).asnumpy()
    except (TypeError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--mixed_precision {name} cannot run on {device}: MindSpore has no {name} kernels "
                         f"there ({reason}). Use --mixed_precision no (float32, the CPU default)"
                         f"{' or fp16' if name == 'bf16' else ''}, or another --device_target") from None
    finally:
        mindspore.set_context(pynative_synchronize=not asynchronous)


def mixed_precision_dtype(name: str):
    """The compute dtype to build a head with for `--mixed_precision name` (None for "no"), after checking
    that the device has its kernels, so a refusal comes before anything is built or written."""
    dtype = compute_dtype(name)
    if dtype is not None:
        check_device_kernels(name, dtype)
    return dtype


class LossScaler:
    """Loss scaling as torch.cuda.amp.GradScaler does it.

    "none": scale 1; "static": a fixed scale; "dynamic": start at `init_scale`. Each non-finite step is
    skipped and multiplies the scale by `backoff_factor`. After `growth_interval` finite steps in a row the
    scale is multiplied by `growth_factor`. Powers of two keep `unscale` exact.
    """

    def __init__(self, kind: str = "dynamic", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        if kind not in SCALER_KINDS:
            raise ValueError(f"loss scaler kind must be one of {SCALER_KINDS}, got {kind!r}")
        if not (init_scale > 0 and growth_factor > 1 and 0 < backoff_factor < 1 and growth_interval >= 1):
            raise ValueError("loss scaling needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 and "
                             f"growth_interval >= 1, got {init_scale}, {growth_factor}, {backoff_factor}, "
                             f"{growth_interval}")
        self.kind = kind
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.loss_scale = 1.0 if kind == "none" else float(init_scale)
        self.growth_tracker = 0  # finite steps since the scale last changed

    @property
    def skips_non_finite(self) -> bool:
        """Whether a non-finite step is an expected fp16 overflow to skip (dynamic) rather than an error."""
        return self.kind == "dynamic"

    def scale(self, loss):
        return loss if self.kind == "none" else ops.mul(loss, self.loss_scale)

    def unscale(self, grads: dict) -> dict:
        if self.kind == "none":
            return grads
        inverse = 1.0 / self.loss_scale
        return {name: ops.mul(grad, inverse) for name, grad in grads.items()}

    def update(self, finite: bool) -> None:
        """Call once per optimizer step, applied or skipped; `finite`: the step's loss and gradients were."""
        if self.kind != "dynamic":
            return
        if not finite:
            self.loss_scale *= self.backoff_factor
            self.growth_tracker = 0
            if self.loss_scale < 1.0:
                # the gradients overflow even unscaled: the model itself produces Inf/NaN, scaling cannot help
                raise FloatingPointError(f"the loss scale fell to {self.loss_scale} after consecutive non-finite "
                                         "steps: the loss or gradients are Inf/NaN even without scaling")
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            grown = self.loss_scale * self.growth_factor
            if grown <= FLOAT32_MAX:  # as torch: never grow into an Inf scale
                self.loss_scale = grown
            self.growth_tracker = 0

    def state_dict(self) -> dict:
        """Plain JSON numbers: a checkpoint stores them, and a resume continues with the same scale."""
        return {"kind": self.kind, "scale": self.loss_scale, "growth_tracker": self.growth_tracker,
                "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"loss scaler state is for kind {state.get('kind')!r}, this scaler is {self.kind!r}")
        if not (isinstance(state["scale"], (int, float)) and math.isfinite(state["scale"]) and state["scale"] > 0):
            raise ValueError(f"loss scaler state has an invalid scale {state['scale']!r}")
        self.loss_scale, self.growth_tracker = float(state["scale"]), int(state["growth_tracker"])
        self.growth_factor, self.backoff_factor = float(state["growth_factor"]), float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])


def default_loss_scaler(name: str) -> LossScaler:
    """fp16 needs dynamic scaling. bf16 has float32's exponent range and needs none, and neither does float32."""
    return LossScaler("dynamic" if compute_dtype(name) == mindspore.float16 else "none")
