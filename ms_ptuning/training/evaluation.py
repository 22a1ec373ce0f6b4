"""Evaluation outputs: batches concatenated as Hugging Face's Trainer does, and the two metric contracts.

- `compute_metrics(EvalPrediction)`: Hugging Face's contract. `predictions` are the model outputs (a tuple
  for multi-output heads), `label_ids` the label columns (`label_names`), `inputs` the input_ids when
  `include_for_metrics` asks for them.
- `DatasetMetrics(fn)`: ms_ptuning's tasks score with `fn(predictions, dataset)`, because some metrics need
  columns the model never sees (SQuAD's post-processing reads each feature's example id, offsets and the
  context; ReCoRD its candidate entities). Wrap such a function in `DatasetMetrics` and the Trainer passes
  it the evaluated dataset, metadata columns included.

Outputs of different sequence widths (per-batch padding) are padded to the widest with -100 before they
are concatenated, as HF's `nested_concat` does; metrics must ignore -100 positions.
"""

import numpy as np

PAD_INDEX = -100


class DatasetMetrics:
    """Marks a metric function that takes (predictions, dataset) instead of an EvalPrediction."""

    def __init__(self, function):
        self.function = function

    def __call__(self, predictions, dataset) -> dict:
        return self.function(predictions, dataset)


def pad_width(array: np.ndarray, width: int) -> np.ndarray:
    """(B, T, ...) → (B, width, ...), new positions -100."""
    if array.ndim < 2 or array.shape[1] == width:
        return array
    padded = np.full((array.shape[0], width, *array.shape[2:]), PAD_INDEX, dtype=array.dtype)
    padded[:, :array.shape[1]] = array
    return padded


def concat_padded(arrays: list) -> np.ndarray:
    """Concatenate batches along rows, padding the second dimension to the widest batch."""
    if arrays[0].ndim < 2:
        return np.concatenate(arrays)
    width = max(array.shape[1] for array in arrays)
    return np.concatenate([pad_width(array, width) for array in arrays])


def concat_outputs(batches: list):
    """Per-batch outputs (arrays, or tuples of arrays) → one array or one tuple of arrays."""
    if isinstance(batches[0], tuple):
        return tuple(concat_padded(list(part)) for part in zip(*batches))
    return concat_padded(batches)


def prefixed(metrics: dict, prefix: str) -> dict:
    """HF's key rule: every metric gets `<prefix>_` unless it already has it."""
    return {(name if name.startswith(f"{prefix}_") else f"{prefix}_{name}"): value for name, value in metrics.items()}
