"""Run the torch reference on exchange directories (one or more) and write its outputs there.

Reads `spec.json` ({"head", "backbone_config", "ptuning_config", "seed"}), `batch.safetensors` and, when
present, `weights.safetensors`; otherwise initialises the model from `seed` and writes those weights so
the MindSpore side can load the very same numbers. Writes `reference_outputs.safetensors`: `logits`,
`loss` and `grad.<name>` for every trainable parameter (eval mode, so dropout is off). With a "generate"
entry in the spec, a head with `greedy_generate` also writes its greedy decode to `reference_generations.json`.
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

from ..config import PTuningConfig
from .models import HEADS


def build(spec):
    backbone_config = transformers.AutoConfig.for_model(**spec["backbone_config"])
    torch.manual_seed(spec.get("seed", 0))
    backbone = transformers.AutoModel.from_config(backbone_config, attn_implementation="eager")
    return HEADS[spec["head"]](backbone, PTuningConfig.from_dict(spec["ptuning_config"]))


def untied_state_dict(model) -> dict:
    """state_dict with each tied tensor (an MLM decoder sharing the word embeddings) once, under its first
    name: safetensors refuses tensors that share memory."""
    kept, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            kept[name] = tensor.contiguous()
    return kept


def load_untied(model, weights: dict) -> None:
    """Strict load of an `untied_state_dict`: only the second names of tied tensors may be absent."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(model.state_dict()) - set(untied_state_dict(model))
    if unexpected or set(missing) - tied:
        raise KeyError(f"weights do not match the reference model: missing {sorted(set(missing) - tied)}, "
                       f"unexpected {sorted(unexpected)}")


def run(workdir):
    with open(os.path.join(workdir, "spec.json")) as handle:
        spec = json.load(handle)
    model = build(spec)
    weights_path = os.path.join(workdir, "weights.safetensors")
    if os.path.exists(weights_path):
        load_untied(model, load_file(weights_path))
    else:
        save_file(untied_state_dict(model), weights_path)
    model.eval()
    batch = load_file(os.path.join(workdir, "batch.safetensors"))
    loss, logits = model(**batch)
    loss.backward()
    parts = {f"logits.{i}": part for i, part in enumerate(logits)} if isinstance(logits, tuple) else {"logits": logits}
    outputs = {name: part.detach().contiguous() for name, part in parts.items()}
    outputs["loss"] = loss.detach().reshape(1)
    for name, param in model.named_parameters():
        if param.requires_grad:
            outputs[f"grad.{name}"] = param.grad.contiguous()
    if "generate" in spec:  # optional: {"prompts": [[ids]], "max_new_tokens", "eos_token_id"}
        with open(os.path.join(workdir, "reference_generations.json"), "w") as handle:
            json.dump(model.greedy_generate(**spec["generate"]), handle)
    # written last and renamed into place: once it exists the case is complete (parity.compare_many polls)
    outputs_path = os.path.join(workdir, "reference_outputs.safetensors")
    save_file(outputs, outputs_path + ".partial")
    os.replace(outputs_path + ".partial", outputs_path)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("MS_PTUNING_THREADS", "1")))
    for workdir in sys.argv[1:]:  # several exchange directories share one process start-up
        run(workdir)
