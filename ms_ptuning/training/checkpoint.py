"""Training checkpoints: written atomically, found safely, loaded without unpickling.

A checkpoint is a directory `checkpoint-<step>/` with
  trainable.safetensors   the trainable weights (adapter + head, or everything when fine-tuning)
  optimizer.safetensors   AdamW moments and step count
  trainer_state.json      Hugging Face's TrainerState (`TrainerState.load_from_json` reads it): global step,
                          epoch, log history, best metric, callback states
  run_state.json          what an exact resume needs beyond it: the position inside the epoch, the logged-loss
                          sums, the best dev evaluation with its test-split scores, the loss scale, and the
                          run's config (the training arguments that shape the run, the PTuningConfig, a
                          fingerprint of the train data), which a resume must match
It is written under a temporary name and renamed into place, so a directory named `checkpoint-<step>` is
always complete; leftovers of a killed write keep their temporary name and are never picked. A checkpoint
is removed by renaming it away first, so a deletion cut short never leaves a partial `checkpoint-<step>`.

No RNG state is stored because none is needed: the epoch order is a function of (seed, epoch) and dropout
is reseeded from (seed, epoch, batch) before every forward pass (see Trainer.train), so the step after a
resume draws what the uninterrupted run drew. tests/test_resume_killed.py checks this bit for bit.
"""

import json
import os
import re
import shutil
import tempfile

from safetensors.numpy import save_file

from ..safe_loading import load_safetensors, pickle_files

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STAGING_PREFIX, DISCARD_PREFIX = ".checkpoint-", ".discarded-"
STATE_FILE = "run_state.json"
TRAINER_STATE_FILE = "trainer_state.json"


def save_checkpoint(output_dir: str, step: int, trainable: dict, optimizer: dict, state: dict,
                    extra_files: dict | None = None) -> str:
    """trainable/optimizer: name → numpy array. extra_files: file name → JSON-able object."""
    os.makedirs(output_dir, exist_ok=True)
    final = os.path.join(output_dir, f"checkpoint-{step}")
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{step}.tmp-", dir=output_dir)
    try:
        for name, arrays in (("trainable.safetensors", trainable), ("optimizer.safetensors", optimizer)):
            save_file(arrays, os.path.join(staging, name))
            with open(os.path.join(staging, name), "rb") as handle:
                os.fsync(handle.fileno())  # on disk before the rename publishes it, as the JSON files below
        for name, content in {STATE_FILE: state, **(extra_files or {})}.items():
            with open(os.path.join(staging, name), "w") as handle:
                json.dump(content, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
        if os.path.exists(final):
            discard(final)
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
    """(trainable arrays, optimizer arrays, run state dict); errors name the file that is missing or broken.
    The Hugging Face TrainerState is `read_json(path, TRAINER_STATE_FILE)`."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    files = {name: os.path.join(path, name)
             for name in ("trainable.safetensors", "optimizer.safetensors", STATE_FILE, TRAINER_STATE_FILE)}
    for name, file in files.items():
        if not os.path.isfile(file):
            pickled = pickle_files(path)
            hint = (f"; it holds pickle files {pickled}, which ms_ptuning never unpickles (they can run code)"
                    if pickled else "")
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing{hint}")
    trainable = load_safetensors(files["trainable.safetensors"])
    optimizer = load_safetensors(files["optimizer.safetensors"])
    return trainable, optimizer, read_json(path, STATE_FILE)


def read_json(checkpoint: str, name: str) -> dict:
    path = os.path.join(checkpoint, name)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt: {error}") from None


def discard(path: str) -> None:
    """Delete a directory after renaming it to a hidden name, so no partial `checkpoint-<step>` can remain."""
    hidden = tempfile.mkdtemp(prefix=DISCARD_PREFIX, dir=os.path.dirname(os.path.abspath(path)))
    moved = os.path.join(hidden, os.path.basename(path))
    os.rename(path, moved)
    shutil.rmtree(hidden)


def remove_leftovers(output_dir: str) -> None:
    """Delete what killed writes and deletions left: hidden staging and discarded directories."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        if name.startswith(DISCARD_PREFIX) or (name.startswith(STAGING_PREFIX) and ".tmp-" in name):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def prune_checkpoints(output_dir: str, keep: int | None, protect: str | None = None) -> None:
    """Delete the oldest checkpoints beyond `keep`, never the protected (best) one."""
    if not keep:
        return
    checkpoints = list_checkpoints(output_dir)
    for path in checkpoints[:-keep]:
        if protect is None or os.path.abspath(path) != os.path.abspath(protect):
            discard(path)
