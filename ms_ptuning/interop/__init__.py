"""Adapters in other libraries' formats, read as ms_ptuning adapters and written from them.

- `peft.py`: Hugging Face peft adapter directories (`adapter_config.json` with a `peft_type` +
  `adapter_model.safetensors`), prefix and prompt tuning, as peft 0.17 saves and loads them.
- `thudm.py`: THUDM/P-tuning-v2 output directories (`config.json` naming one of its model classes + the
  full state dict those classes hold).

`read_adapter(directory)` recognises the format by its files and returns a `ForeignAdapter`: an ms_ptuning
adapter config (what `adapter_config.json` holds) and weights under ms_ptuning's parameter names; ms_ptuning's
own adapters come back the same way. `ms_ptuning.interop.export` writes the other direction
(`ms-ptuning export`). Nothing here imports mindnlp: the conversions are names, shapes and JSON.
"""

import json
import os
from dataclasses import dataclass

from ..safe_loading import load_safetensors, pickle_files

OURS = "ms_ptuning"


@dataclass
class ForeignAdapter:
    """`config`: an ms_ptuning adapter config (head, ptuning_config, backbone_config, base_model, labels, ...);
    `weights`: ms_ptuning parameter name → numpy array; `source`: the weights file; `holds_backbone`: the
    weights include every backbone weight (finetune adapters, THUDM's full state dicts), so the backbone is
    built from `backbone_config` and needs no base model's weights."""

    config: dict
    weights: dict
    source: str
    holds_backbone: bool
    format: str = OURS


def detect_format(directory: str) -> str:
    """`ms_ptuning`, `peft` or `thudm`, from the directory's files; an error says what was looked for."""
    from . import peft, thudm
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} is not a directory")
    config_path = os.path.join(directory, "adapter_config.json")
    if os.path.isfile(config_path):
        return peft.NAME if "peft_type" in read_json(config_path) else OURS
    if thudm.is_thudm_dir(directory):
        return thudm.NAME
    raise FileNotFoundError(f"{directory} is not an adapter directory: it has no adapter_config.json (ms_ptuning's "
                            "or peft's) and no config.json naming a THUDM/P-tuning-v2 or Hugging Face task model")


def read_adapter(directory: str, base: str = None, allow_pickle: bool = False) -> ForeignAdapter:
    """The adapter in `directory`, whatever its format. `base`: the base model directory (peft adapters name
    theirs in base_model_name_or_path; this overrides it). `allow_pickle`: unpickle `*.bin` weights when
    there are no safetensors (they can run code)."""
    from . import peft, thudm
    found = detect_format(directory)
    if found == peft.NAME:
        return peft.read(directory, base, allow_pickle)
    if found == thudm.NAME:
        return thudm.read(directory, allow_pickle)
    return read_ours(directory)


def read_ours(directory: str) -> ForeignAdapter:
    """An ms_ptuning adapter directory (`adapter_config.json` + `adapter.safetensors`)."""
    from ..adapters import WEIGHTS_FILE, read_adapter_config
    config = read_adapter_config(directory)
    path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(path):
        pickled = pickle_files(directory)
        hint = f"; its pickle files {pickled} are never unpickled (they can run code)" if pickled else ""
        raise FileNotFoundError(f"{directory} has no {WEIGHTS_FILE}{hint}")
    return ForeignAdapter(config, load_safetensors(path), path, config["ptuning_config"]["mode"] == "finetune")


def read_json(path: str) -> dict:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt: {error}") from None


def load_weights_file(directory: str, safetensors_name: str, pickle_name: str, allow_pickle: bool) -> tuple:
    """(name → numpy array, the file read): `safetensors_name`, else `pickle_name` unpickled with `allow_pickle`."""
    path = os.path.join(directory, safetensors_name)
    if os.path.isfile(path):
        return load_safetensors(path), path
    pickled = os.path.join(directory, pickle_name)
    if not os.path.isfile(pickled):
        raise FileNotFoundError(f"{directory} has neither {safetensors_name} nor {pickle_name}")
    if not allow_pickle:
        raise ValueError(f"{directory} holds its weights as {pickle_name}, a pickle: ms_ptuning does not unpickle "
                         "weights by default because unpickling can run arbitrary code; pass --allow_pickle "
                         "(allow_pickle=True) if you trust the file")
    from ..backend import torch  # mindtorch: its torch.load reads torch's zip/pickle format
    state = torch.load(pickled, map_location="cpu")
    return {name: tensor.numpy() for name, tensor in state.items()}, pickled


def backbone_sizes(backbone_config: dict) -> tuple:
    """(hidden size, layers, attention heads) under BERT's or GPT-2's field names."""
    get = backbone_config.get
    return (get("hidden_size", get("n_embd")), get("num_hidden_layers", get("n_layer")),
            get("num_attention_heads", get("n_head")))


def base_labels(backbone_config: dict, num_labels: int) -> list | None:
    """The label names a config's id2label gives, unless they are transformers' placeholders (LABEL_0, ...)."""
    id2label = backbone_config.get("id2label") or {}
    names = [id2label.get(str(index), id2label.get(index)) for index in range(num_labels)]
    if None in names or names == [f"LABEL_{index}" for index in range(num_labels)]:
        return None
    return names


__all__ = ["ForeignAdapter", "detect_format", "read_adapter"]
