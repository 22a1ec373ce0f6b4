"""Save and load the trainable part of a model: safetensors weights + a JSON config, never pickle.

The saved weights are the trainable parameters themselves, reparameterization MLP/LSTM included, so a
reloaded adapter can keep training (peft stores only the encoder output, which loses them on reload).
"""

import json
import os

from safetensors.numpy import save_file

from .safe_loading import load_safetensors, pickle_files
from .weights import assign_weights, named_weights, to_numpy, trainable_weights

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


def adapter_config(model, **metadata) -> dict:
    """What rebuilds the model: its head's registry name, its PTuningConfig and its backbone's config."""
    return {"head": model.head_name, "ptuning_config": model.config.to_dict(),
            "backbone_config": model.backbone.config.to_dict(), **metadata}


def save_adapter(model, directory: str, **metadata) -> None:
    """Write `adapter.safetensors` and `adapter_config.json`; files are replaced atomically."""
    os.makedirs(directory, exist_ok=True)
    weights_tmp = os.path.join(directory, f".{WEIGHTS_FILE}.tmp")
    config_tmp = os.path.join(directory, f".{CONFIG_FILE}.tmp")
    save_file(to_numpy(trainable_weights(model)), weights_tmp)
    with open(config_tmp, "w") as handle:
        json.dump(adapter_config(model, **metadata), handle, indent=2, default=str)
    os.replace(weights_tmp, os.path.join(directory, WEIGHTS_FILE))
    os.replace(config_tmp, os.path.join(directory, CONFIG_FILE))


def read_adapter_config(directory: str) -> dict:
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory} is not an adapter directory: {CONFIG_FILE} is missing")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt: {error}") from None


def read_adapter_weights(directory: str) -> tuple:
    """(name → numpy array, the file) of the adapter in `directory`; pickle files are never unpickled."""
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(weights_path):
        pickled = pickle_files(directory)
        hint = f"; its pickle files {pickled} are never unpickled (they can run code)" if pickled else ""
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_FILE}{hint}")
    return load_safetensors(weights_path), weights_path


def load_adapter(model, directory: str) -> None:
    """Load saved trainable weights into a model built with the same head and config. Names, shapes and
    the P-tuning config are checked before anything is written."""
    config = read_adapter_config(directory)
    if config["ptuning_config"] != model.config.to_dict():
        raise ValueError(f"{directory} was saved with ptuning_config {config['ptuning_config']}, "
                         f"the model has {model.config.to_dict()}")
    load_weights(model, *read_adapter_weights(directory))


def load_weights(model, arrays: dict, source: str) -> None:
    """Assign `arrays` (name → numpy) to the model after checking that every trainable weight is there and
    every array names a weight of the model; `source` (the file) is named in errors."""
    missing = sorted(set(trainable_weights(model)) - set(arrays))
    if missing:
        raise ValueError(f"{source} lacks trainable weights {missing[:10]}")
    unknown = sorted(set(arrays) - set(named_weights(model)))
    if unknown:
        raise ValueError(f"{source} has weights the model does not: {unknown[:10]}")
    assign_weights(model, arrays, strict=False, source=source)
