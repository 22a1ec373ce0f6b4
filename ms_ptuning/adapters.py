"""Save and load the trainable part of a model: safetensors weights + a JSON config, never pickle.

The saved weights are the trainable parameters themselves, reparameterization MLP/LSTM included, so a
reloaded adapter can keep training (peft stores only the encoder output, which loses them on reload).
"""

import json
import os

from safetensors.numpy import load_file, save_file

from .weights import assign_weights, named_weights, to_numpy, trainable_weights

WEIGHTS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


def head_name(model) -> str:
    from .models import HEADS  # the registry imports every head module

    for name, cls in HEADS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered head")


def adapter_config(model, **metadata) -> dict:
    backbone = next(cell for _, cell in model.cells_and_names() if hasattr(cell, "backbone")).backbone
    return {"head": head_name(model), "ptuning_config": model.config.to_dict(),
            "backbone_config": backbone.config.to_dict(), **metadata}


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
    with open(path) as handle:
        return json.load(handle)


def load_adapter(model, directory: str) -> None:
    """Load saved trainable weights into a model built with the same head and config. Names, shapes and
    the P-tuning config are checked before anything is written."""
    config = read_adapter_config(directory)
    if config["ptuning_config"] != model.config.to_dict():
        raise ValueError(f"{directory} was saved with ptuning_config {config['ptuning_config']}, "
                         f"the model has {model.config.to_dict()}")
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    try:
        arrays = load_file(weights_path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_FILE}") from None
    except Exception as error:
        raise ValueError(f"{weights_path} is corrupt: {type(error).__name__}: {error}") from None
    missing = sorted(set(trainable_weights(model)) - set(arrays))
    if missing:
        raise ValueError(f"{weights_path} lacks trainable weights {missing[:10]}")
    unknown = sorted(set(arrays) - set(named_weights(model)))
    if unknown:
        raise ValueError(f"{weights_path} has weights the model does not: {unknown[:10]}")
    assign_weights(model, arrays, strict=False, source=weights_path)
