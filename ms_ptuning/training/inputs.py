"""What the Trainer accepts as datasets and how batches become model inputs.

The Trainer reads a dataset through `len(dataset)`, `dataset.columns` (name → numpy column) and
`dataset.batch(indices)` (name → numpy array): our `ArrayDataset`, or any dataset with those three (tasks that
pad per batch return their own). A Hugging Face `datasets.Dataset` is converted into an ArrayDataset; with a
`data_collator` the batches are made by it from per-row feature dicts, as in HF.
"""

import hashlib
import inspect

import numpy as np

from ..data.dataset import ArrayDataset

LABEL_COLUMNS_OF_QA = ("start_positions", "end_positions")


class CollatedDataset:
    """A dataset whose batches a Hugging Face data collator makes from the rows' feature dicts."""

    def __init__(self, dataset, collator):
        self.dataset, self.collator = dataset, collator

    @property
    def columns(self) -> dict:
        return self.dataset.columns

    def __len__(self) -> int:
        return len(self.dataset)

    def batch(self, indices) -> dict:
        features = [{name: values[row] for name, values in self.columns.items()} for row in indices]
        return {name: as_numpy(values) for name, values in self.collator(features).items()}


def as_numpy(values) -> np.ndarray:
    """A collator's output (numpy, lists, MindSpore or mindtorch tensors) as a numpy array."""
    for method in ("asnumpy", "numpy"):
        if hasattr(values, method):
            return np.asarray(getattr(values, method)())
    return np.asarray(values)


def column_array(values: list) -> np.ndarray:
    """One column as numpy; rows of different lengths become an object array of rows (a collator pads them)."""
    try:
        return np.asarray(values)
    except ValueError:  # numpy refuses ragged nested lists
        column = np.empty(len(values), dtype=object)
        column[:] = [np.asarray(row) for row in values]
        return column


def as_dataset(dataset, source: str, collated: bool):
    """The Trainer's view of a train/eval/test dataset (see the module docstring)."""
    if all(hasattr(dataset, name) for name in ("columns", "batch", "__len__")):
        return dataset
    if hasattr(dataset, "column_names") and hasattr(dataset, "__getitem__"):  # datasets.Dataset
        converted = ArrayDataset({name: column_array(dataset[name]) for name in dataset.column_names})
        ragged = [name for name, values in converted.columns.items()
                  if values.dtype == object and not isinstance(values[0], str)]
        if ragged and not collated:
            raise ValueError(f"{source}: columns {ragged} have rows of different lengths; pad them when encoding "
                             "or pass data_collator=DataCollatorWithPadding(tokenizer, return_tensors='np')")
        return converted
    raise TypeError(f"{source}: expected an ms_ptuning ArrayDataset or a datasets.Dataset, got {type(dataset).__name__}")


def model_input_names(model) -> tuple | None:
    """The keyword arguments of the model's construct(); None when it takes **kwargs (then all columns)."""
    parameters = list(inspect.signature(model.construct).parameters.values())
    if any(parameter.kind == parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return tuple(parameter.name for parameter in parameters)


def default_label_names(input_names) -> list:
    """HF's `find_labels`: the model's arguments named like labels, and QA's answer positions."""
    return [name for name in input_names or () if "label" in name or name in LABEL_COLUMNS_OF_QA]


def dataset_fingerprint(dataset, skip=()) -> dict | None:
    """Size and sha256 of the columns (metadata in `skip` left out); a resume checks it."""
    if dataset is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(dataset.columns):
        values = dataset.columns[name]
        if name in skip:
            continue
        digest.update(f"{name}|{values.dtype.str}|{values.shape}".encode())
        if values.dtype != object:
            digest.update(np.ascontiguousarray(values).tobytes())
            continue
        for row in values:  # ragged rows (a collator pads them), strings, nested values
            digest.update(row_bytes(row))
    return {"examples": len(dataset), "sha256": digest.hexdigest()}


def row_bytes(row) -> bytes:
    """Bytes that stand for one row of an object column, equal in every process (no object addresses)."""
    array = np.asarray(row)
    if array.dtype == object or array.dtype.kind in "US":
        return repr(row).encode()
    return f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes()
