"""In-memory datasets of equal-length numpy columns, batched in a seeded order."""

import numpy as np

PAD_PREDICTION = -100  # what padded positions of per-token predictions hold, as Hugging Face's Trainer pads
IGNORE_INDEX = -100  # a label the loss skips


class ArrayDataset:
    """Named numpy columns with the same first dimension, e.g. input_ids (N, T), labels (N,).

    With `pad_to_multiple_of` (per-batch padding, as a padding collator gives): the columns hold every
    row padded to the longest example (T), and `batch()` cuts the sequence columns (numeric, axis 1 of
    width T) to the smallest multiple of `pad_to_multiple_of` that holds the batch's longest row, capped at
    T. Batches then come in a bounded set of widths (compiled graphs need that), while the stored columns
    (hence fingerprints and resume) do not depend on the batching. Rows must be right-padded, with an
    `attention_mask` column.
    """

    def __init__(self, columns: dict, pad_to_multiple_of: int | None = None):
        if not columns:
            raise ValueError("a dataset needs at least one column")
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self.columns = {name: np.asarray(values) for name, values in columns.items()}
        self.pad_to_multiple_of = pad_to_multiple_of
        self.row_lengths = None if pad_to_multiple_of is None else right_padded_lengths(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    @property
    def sequence_width(self) -> int | None:
        """T, the width every per-batch-padded batch is cut from; None without per-batch padding."""
        return None if self.row_lengths is None else self.columns["attention_mask"].shape[1]

    def select(self, indices) -> "ArrayDataset":
        return ArrayDataset({name: values[indices] for name, values in self.columns.items()}, self.pad_to_multiple_of)

    def batch(self, indices) -> dict:
        batch = {name: values[indices] for name, values in self.columns.items()}
        if self.row_lengths is None:
            return batch
        multiple, full = self.pad_to_multiple_of, self.sequence_width
        width = min(full, -(-int(self.row_lengths[indices].max()) // multiple) * multiple)
        return {name: values[:, :width] if is_sequence_column(values, full) else values
                for name, values in batch.items()}


def is_sequence_column(values: np.ndarray, width: int) -> bool:
    return values.dtype != object and values.ndim >= 2 and values.shape[1] == width


def right_padded_lengths(columns: dict) -> np.ndarray:
    """(N,) tokens per row from the attention mask; refuses left padding (cutting it would drop tokens)."""
    if "attention_mask" not in columns or columns["attention_mask"].ndim != 2:
        raise ValueError("per-batch padding needs an (N, T) attention_mask column")
    mask = columns["attention_mask"] != 0
    lengths = mask.sum(axis=1)
    if not np.array_equal(mask, np.arange(mask.shape[1])[None, :] < lengths[:, None]):
        raise ValueError("per-batch padding needs right-padded rows (attention_mask 1…1 0…0)")
    return lengths


def concatenate_rows(arrays: list, width: int | None = None) -> np.ndarray:
    """Batch outputs → one array along axis 0. Outputs of different sequence widths (per-batch padding)
    are first padded on axis 1 with PAD_PREDICTION to `width`, or to the widest when `width` is None."""
    if all(array.ndim < 2 for array in arrays):
        return np.concatenate(arrays)
    width = width or max(array.shape[1] for array in arrays)
    padded = []
    for array in arrays:
        gap = width - array.shape[1]
        if gap < 0:
            raise ValueError(f"an output of width {array.shape[1]} is wider than {width}")
        pad = [(0, 0), (0, gap)] + [(0, 0)] * (array.ndim - 2)
        padded.append(np.pad(array, pad, constant_values=PAD_PREDICTION) if gap else array)
    return np.concatenate(padded)


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order of one epoch: a pure function of (seed, epoch), so a resumed run replays it."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(order: np.ndarray, batch_size: int, drop_last: bool = False):
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def causal_lm_dataset(sequences, pad_id: int) -> ArrayDataset:
    """(ids, index of the first labelled token) per row → input_ids, attention_mask, labels (N, W), right-padded
    to the longest row W; labels are the ids from that index on, −100 before it and on the padding."""
    width = max(len(ids) for ids, _ in sequences)
    input_ids = np.full((len(sequences), width), pad_id, dtype=np.int32)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int32)
    labels = np.full((len(sequences), width), IGNORE_INDEX, dtype=np.int32)
    for row, (ids, first_label) in enumerate(sequences):
        input_ids[row, :len(ids)] = ids
        attention_mask[row, :len(ids)] = 1
        labels[row, first_label:len(ids)] = ids[first_label:]
    return ArrayDataset({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})
