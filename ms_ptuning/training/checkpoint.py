"""Training checkpoints: written atomically, found safely, loaded without unpickling.

A checkpoint is a directory `checkpoint-<step>/` with
  trainable.safetensors   the trainable weights (adapter + head, or everything when fine-tuning)
  optimizer.safetensors   AdamW moments and step count
  trainer_state.json      global step, epoch, position inside the epoch, best metric, seed
It is written under a temporary name and renamed into place, so a directory named `checkpoint-<step>` is
always complete; leftovers of a killed write keep their temporary name and are never picked.
"""

import json
import os
import re
import shutil
import tempfile

from safetensors.numpy import load_file, save_file

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def save_checkpoint(output_dir: str, step: int, trainable: dict, optimizer: dict, state: dict,
                    extra_files: dict | None = None) -> str:
    """trainable/optimizer: name → numpy array. extra_files: file name → JSON-able object."""
    os.makedirs(output_dir, exist_ok=True)
    final = os.path.join(output_dir, f"checkpoint-{step}")
    staging = tempfile.mkdtemp(prefix=f".checkpoint-{step}.tmp-", dir=output_dir)
    try:
        save_file(trainable, os.path.join(staging, "trainable.safetensors"))
        save_file(optimizer, os.path.join(staging, "optimizer.safetensors"))
        for name, content in {STATE_FILE: state, **(extra_files or {})}.items():
            with open(os.path.join(staging, name), "w") as handle:
                json.dump(content, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def list_checkpoints(output_dir: str) -> list:
    """Complete checkpoints in step order."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), os.path.join(output_dir, name))
             for name in os.listdir(output_dir) if (m := CHECKPOINT_PATTERN.match(name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str) -> str | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: str) -> tuple:
    """(trainable arrays, optimizer arrays, state dict); errors name the file that is missing or broken."""
    files = {name: os.path.join(path, name) for name in ("trainable.safetensors", "optimizer.safetensors", STATE_FILE)}
    for name, file in files.items():
        if not os.path.isfile(file):
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
    try:
        trainable = load_file(files["trainable.safetensors"])
        optimizer = load_file(files["optimizer.safetensors"])
    except Exception as error:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"checkpoint {path} is corrupt: {type(error).__name__}: {error}") from None
    with open(files[STATE_FILE]) as handle:
        state = json.load(handle)
    return trainable, optimizer, state


def prune_checkpoints(output_dir: str, keep: int | None, protect: str | None = None) -> None:
    """Delete the oldest checkpoints beyond `keep`, never the protected (best) one."""
    if not keep:
        return
    checkpoints = list_checkpoints(output_dir)
    for path in checkpoints[:-keep]:
        if protect is None or os.path.abspath(path) != os.path.abspath(protect):
            shutil.rmtree(path)
