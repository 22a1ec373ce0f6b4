"""What the format modules share: the imported adapter, JSON and weights files, backbone sizes, label names."""

import json
import os
from dataclasses import dataclass

from ..safe_loading import load_safetensors

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
