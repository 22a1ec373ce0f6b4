"""In-memory datasets of equal-length numpy columns, batched in a seeded order."""

import numpy as np


class ArrayDataset:
    """Named numpy columns with the same first dimension, e.g. input_ids (N, T), labels (N,)."""

    def __init__(self, columns: dict):
        if not columns:
            raise ValueError("a dataset needs at least one column")
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"columns have different lengths: {lengths}")
        self.columns = {name: np.asarray(values) for name, values in columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def select(self, indices) -> "ArrayDataset":
        return ArrayDataset({name: values[indices] for name, values in self.columns.items()})

    def batch(self, indices) -> dict:
        return {name: values[indices] for name, values in self.columns.items()}


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order of one epoch: a pure function of (seed, epoch), so a resumed run replays it."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batch_indices(order: np.ndarray, batch_size: int, drop_last: bool = False):
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]
