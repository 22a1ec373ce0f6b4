"""What ms_ptuning hands the torch side of a comparison, in one directory, written once per seed:

- `spec.json`: the task's name and options (so the torch side rebuilds its metric without reading data), the
  model directory, head, PTuningConfig, dropout settings, the TrainingArguments values that shape training
  and how each split is batched (`pad_to_multiple_of`);
- `<split>.safetensors` + `<split>.json`: each encoded split (`train`, `validation`, test splits) exactly as
  ms_ptuning's Trainer reads it: numeric columns as tensors, text columns (SQuAD's contexts and answers,
  ReCoRD's entities) as JSON lists;
- `init.safetensors`: ms_ptuning's seeded initial weights of every module the checkpoint does not hold
  (prefix/prompt encoders, heads, a missing pooler), which the torch side loads.

Plain numpy + safetensors + json: both processes read it, and the torch one never imports mindnlp.
"""

import enum
import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

from ..data.dataset import ArrayDataset

SPEC = "spec.json"
INIT_WEIGHTS = "init.safetensors"


def write_split(directory: str, split: str, dataset) -> None:
    numeric = {name: np.ascontiguousarray(values) for name, values in dataset.columns.items() if values.dtype != object}
    texts = {name: [as_json(value) for value in values] for name, values in dataset.columns.items()
             if values.dtype == object}
    save_file(numeric, os.path.join(directory, f"{split}.safetensors"))
    with open(os.path.join(directory, f"{split}.json"), "w") as handle:
        json.dump({"pad_to_multiple_of": getattr(dataset, "pad_to_multiple_of", None), "object_columns": texts,
                   "order": list(dataset.columns)}, handle)


def read_split(directory: str, split: str) -> ArrayDataset:
    columns = load_file(os.path.join(directory, f"{split}.safetensors"))
    with open(os.path.join(directory, f"{split}.json")) as handle:
        meta = json.load(handle)
    for name, values in meta["object_columns"].items():
        column = np.empty(len(values), dtype=object)
        for index, value in enumerate(values):  # one by one: equal-length lists would otherwise stack
            column[index] = tuple(value) if isinstance(value, list) else value
        columns[name] = column
    return ArrayDataset({name: columns[name] for name in meta["order"]}, meta["pad_to_multiple_of"])


def as_json(value):
    """A column value or argument as JSON holds it (tuples → lists, numpy → Python, enums → their value)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [as_json(item) for item in value]
    return value


def write_spec(directory: str, spec: dict) -> None:
    with open(os.path.join(directory, SPEC), "w") as handle:
        json.dump(spec, handle, indent=2)


def read_spec(directory: str) -> dict:
    with open(os.path.join(directory, SPEC)) as handle:
        return json.load(handle)


def write_init_weights(directory: str, weights: dict) -> None:
    save_file({name: np.ascontiguousarray(value) for name, value in weights.items()},
              os.path.join(directory, INIT_WEIGHTS))


def read_init_weights(directory: str) -> dict:
    return load_file(os.path.join(directory, INIT_WEIGHTS))
