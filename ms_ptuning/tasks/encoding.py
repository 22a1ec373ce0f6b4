"""Tokenizer output → the fixed-length numpy columns every head takes (padded to max_length)."""

import numpy as np

from .base import TaskDataError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def effective_max_length(tokenizer, max_length: int) -> int:
    """max_length capped at what the model accepts, as the reference does."""
    return min(max_length, tokenizer.model_max_length)


def model_inputs(encoded) -> dict:
    """input_ids, attention_mask, token_type_ids as int64 (N, T); zeros where the tokenizer gives no
    token types (RoBERTa), so every head gets the same columns."""
    columns = {name: np.asarray(encoded[name], dtype=np.int64) for name in MODEL_INPUTS[:2]}
    token_types = encoded.get("token_type_ids")
    columns["token_type_ids"] = (np.asarray(token_types, dtype=np.int64) if token_types is not None
                                 else np.zeros_like(columns["input_ids"]))
    return columns


def encode_texts(tokenizer, first: list, second, max_length: int) -> dict:
    """Single texts (second=None) or text pairs, truncated longest-first and padded to max_length."""
    encoded = tokenizer(first, second, truncation=True, max_length=effective_max_length(tokenizer, max_length),
                        padding="max_length")
    return model_inputs(encoded)


def check_not_empty(examples: list, task_name: str) -> None:
    if not examples:
        raise TaskDataError(f"task {task_name!r}: no examples to encode")


def object_column(values) -> np.ndarray:
    """A 1-D object array (strings, tuples of answers): numpy would otherwise try to stack the tuples."""
    values = list(values)
    column = np.empty(len(values), dtype=object)
    for index, value in enumerate(values):  # one by one: a slice assignment would broadcast equal-length tuples
        column[index] = value
    return column
