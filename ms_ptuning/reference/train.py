"""The torch side of the multi-step parity (`ms_ptuning.parity_training`): train the reference model the way a
torch user would, with `torch.optim.AdamW`, `transformers.get_scheduler` and `clip_grad_norm_`; or, with
`optim` "adam_l2", as THUDM/P-tuning's LAMA loop does: `torch.optim.Adam(weight_decay=...)` over one group of
every trainable weight, `ExponentialLR` stepped after every epoch (`lr_decay_per_epoch`).

Reads spec.json (as `run`), training.json (steps, steps_per_epoch and TrainingArguments values) and
training_data.safetensors
(`data.<column>` arrays and `order`: (steps, accumulation, batch) example indices). Initialises the model from
the spec's seed and writes weights.safetensors before training, so the other side starts from the same
numbers. Writes reference_training.safetensors: `loss` and `grad_norm` per optimizer step (the summed
loss / accumulation of its micro-batches; the norm before clipping) and `weight.<name>` after the last step.
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

from .run import build, untied_state_dict


def decay_parameter_names(model) -> set:
    """Hugging Face Trainer's rule (what `Trainer.get_decay_parameter_names` returns): no weight decay for
    parameters inside LayerNorm modules or named like a bias or a norm."""
    return set(transformers.Trainer.get_decay_parameter_names(None, model))


def optimizer_for(model, settings: dict):
    """(trainable parameters, optimizer, scheduler, whether the scheduler steps per epoch)."""
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    adam = dict(lr=settings["learning_rate"], eps=settings["adam_epsilon"],
                betas=(settings["adam_beta1"], settings["adam_beta2"]))
    if settings.get("optim") == "adam_l2":
        optimizer = torch.optim.Adam([p for _, p in trainable], weight_decay=settings["weight_decay"], **adam)
    else:
        decayed = decay_parameter_names(model)
        groups = [{"params": [p for n, p in trainable if n in decayed], "weight_decay": settings["weight_decay"]},
                  {"params": [p for n, p in trainable if n not in decayed], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, **adam)
    if settings.get("lr_decay_per_epoch"):
        scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=settings["lr_decay_per_epoch"])
        return [param for _, param in trainable], optimizer, scheduler, True
    scheduler = transformers.get_scheduler(settings["lr_scheduler_type"], optimizer,
                                           num_warmup_steps=settings["warmup_steps"],
                                           num_training_steps=settings["steps"])
    return [param for _, param in trainable], optimizer, scheduler, False


def train(workdir: str) -> None:
    with open(os.path.join(workdir, "spec.json")) as handle:
        model = build(json.load(handle))
    with open(os.path.join(workdir, "training.json")) as handle:
        settings = json.load(handle)
    save_complete(untied_state_dict(model), os.path.join(workdir, "weights.safetensors"))
    arrays = load_file(os.path.join(workdir, "training_data.safetensors"))
    columns = {name[len("data."):]: value for name, value in arrays.items() if name.startswith("data.")}
    params, optimizer, scheduler, per_epoch = optimizer_for(model, settings)
    accumulation = settings["gradient_accumulation_steps"]
    max_norm = settings["max_grad_norm"] or float("inf")  # 0: no clipping (the norm is still measured), as HF
    model.train()  # the spec has no dropout: training mode draws nothing random
    losses, norms = [], []
    for step, step_batches in enumerate(arrays["order"], 1):
        step_loss = 0.0
        for indices in step_batches:
            loss, _ = model(**{name: values[indices] for name, values in columns.items()})
            (loss / accumulation).backward()
            step_loss += float(loss.detach()) / accumulation
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        optimizer.step()
        if not per_epoch or step % settings["steps_per_epoch"] == 0:
            scheduler.step()
        optimizer.zero_grad()
        losses.append(step_loss)
    outputs = {"loss": torch.tensor(losses, dtype=torch.float64), "grad_norm": torch.tensor(norms, dtype=torch.float64)}
    outputs.update({f"weight.{name}": param.detach().contiguous() for name, param in model.named_parameters()
                    if param.requires_grad})
    save_complete(outputs, os.path.join(workdir, "reference_training.safetensors"))


def save_complete(tensors: dict, path: str) -> None:
    """Written, then renamed into place: once `path` exists it is complete (the MindSpore side, running
    alongside this process, polls for it)."""
    save_file(tensors, path + ".partial")
    os.replace(path + ".partial", path)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("MS_PTUNING_THREADS", "1")))
    for workdir in sys.argv[1:]:
        train(workdir)
