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

import os

from . import peft, thudm
from .files import OURS, ForeignAdapter, read_json


def detect_format(directory: str) -> str:
    """`ms_ptuning`, `peft` or `thudm`, from the directory's files; an error says what was looked for."""
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
    found = detect_format(directory)
    if found == peft.NAME:
        return peft.read(directory, base, allow_pickle)
    if found == thudm.NAME:
        return thudm.read(directory, allow_pickle)
    return read_ours(directory)


def read_ours(directory: str) -> ForeignAdapter:
    """An ms_ptuning adapter directory (`adapter_config.json` + `adapter.safetensors`)."""
    from ..adapters import read_adapter_config, read_adapter_weights  # lazily: it loads MindSpore
    config = read_adapter_config(directory)
    weights, path = read_adapter_weights(directory)
    return ForeignAdapter(config, weights, path, config["ptuning_config"]["mode"] == "finetune")


__all__ = ["ForeignAdapter", "detect_format", "read_adapter"]
