"""Run the torch reference on one exchange directory and write its outputs there.

Reads `spec.json` ({"head", "backbone_config", "ptuning_config", "seed"}), `batch.safetensors` and, when
present, `weights.safetensors`; otherwise initialises the model from `seed` and writes those weights so
the MindSpore side can load the very same numbers. Writes `reference_outputs.safetensors`: `logits`,
`loss` and `grad.<name>` for every trainable parameter (eval mode, so dropout is off).
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

from ..config import PTuningConfig
from .modeling import HEADS


def build(spec):
    backbone_config = transformers.AutoConfig.for_model(**spec["backbone_config"])
    torch.manual_seed(spec.get("seed", 0))
    backbone = transformers.AutoModel.from_config(backbone_config, attn_implementation="eager")
    return HEADS[spec["head"]](backbone, PTuningConfig.from_dict(spec["ptuning_config"]))


def run(workdir):
    with open(os.path.join(workdir, "spec.json")) as handle:
        spec = json.load(handle)
    model = build(spec)
    weights_path = os.path.join(workdir, "weights.safetensors")
    if os.path.exists(weights_path):
        model.load_state_dict(load_file(weights_path), strict=True)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights_path)
    model.eval()
    batch = load_file(os.path.join(workdir, "batch.safetensors"))
    loss, logits = model(**batch)
    loss.backward()
    outputs = {"logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            outputs[f"grad.{name}"] = param.grad.contiguous()
    save_file(outputs, os.path.join(workdir, "reference_outputs.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("MS_PTUNING_THREADS", "1")))
    run(sys.argv[1])
