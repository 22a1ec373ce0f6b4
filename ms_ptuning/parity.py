"""Same weights → same numbers: run one batch through ms_ptuning and through the torch reference.

The reference runs in a subprocess (`python -m ms_ptuning.reference.run`), initialises the model, writes
its weights as safetensors; this side loads those weights, computes logits, loss and trainable gradients
in eval mode (no dropout) and reports the largest differences.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import mindspore
from safetensors.numpy import load_file, save_file

from .backend import torch
from .config import PTuningConfig
from .models.backbone import build_backbone
from .models import HEADS
from .weights import assign_weights, trainable_weights
import transformers


def run_reference(workdir: str, threads: int = 1) -> None:
    env = dict(os.environ, MS_PTUNING_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-m", "ms_ptuning.reference.run", workdir], env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"torch reference failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


def build_model(head: str, backbone_config, ptuning_config: PTuningConfig):
    return HEADS[head](build_backbone(backbone_config), ptuning_config)


def forward_and_grads(model, batch: dict):
    """Eval-mode loss, logits and {name: grad} for the trainable weights, all as numpy."""
    model.set_train(False)
    weights = trainable_weights(model)
    inputs = {name: torch.tensor(array) for name, array in batch.items()}

    def loss_fn(**kwargs):
        loss, logits = model(**kwargs)
        return loss, logits

    grad_fn = mindspore.value_and_grad(loss_fn, None, list(weights.values()), has_aux=True)
    (loss, logits), grads = grad_fn(**inputs)
    return (float(loss.asnumpy()), logits.asnumpy(),
            {name: grad.asnumpy() for name, grad in zip(weights, grads)})


def compare(head: str, backbone_config, ptuning_config: PTuningConfig, batch: dict, seed: int = 0) -> dict:
    """Max-abs logit/loss difference and the largest per-tensor relative gradient difference
    max |g_ms − g_torch| / max(max |g_torch|, 1e-3 · largest |g_torch| of any tensor).

    The floor keeps gradients that are zero up to rounding (e.g. attention key biases, which softmax
    ignores) from turning float noise into a huge "relative" error."""
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_parity_") as workdir:
        spec = {"head": head, "backbone_config": backbone_config.to_dict(),
                "ptuning_config": ptuning_config.to_dict(), "seed": seed}
        with open(os.path.join(workdir, "spec.json"), "w") as handle:
            json.dump(spec, handle)
        save_file({k: np.ascontiguousarray(v) for k, v in batch.items()}, os.path.join(workdir, "batch.safetensors"))
        run_reference(workdir)
        reference = load_file(os.path.join(workdir, "reference_outputs.safetensors"))
        model = build_model(head, backbone_config, ptuning_config)
        assign_weights(model, load_file(os.path.join(workdir, "weights.safetensors")), source="reference weights")
    loss, logits, grads = forward_and_grads(model, batch)
    reference_grads = {k[len("grad."):]: v for k, v in reference.items() if k.startswith("grad.")}
    if set(reference_grads) != set(grads):
        raise AssertionError(f"trainable parameters differ: only ms {sorted(set(grads) - set(reference_grads))}, "
                             f"only torch {sorted(set(reference_grads) - set(grads))}")
    floor = 1e-3 * max(float(np.abs(ref).max()) for ref in reference_grads.values())
    relative = {name: float(np.abs(grads[name] - ref).max() / max(float(np.abs(ref).max()), floor, 1e-30))
                for name, ref in reference_grads.items()}
    worst = max(relative, key=relative.get)
    return {"logits_max_abs": float(np.abs(logits - reference["logits"]).max()),
            "loss_abs": abs(loss - float(reference["loss"][0])),
            "grad_max_rel": relative[worst], "grad_worst_param": worst,
            "num_trainable_tensors": len(grads)}
