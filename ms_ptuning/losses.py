"""Losses of the task heads, equal to the torch losses Hugging Face heads and the reference compute.

Written with `mindspore.ops` functions only, so the same code compiles in GRAPH_MODE (the compiled train
step) and runs op by op in PyNative, on MindSpore and mindtorch tensors alike (tested against torch, values
and gradients, within float32 rounding).

Fixed-shape batches: a compiled step pads a short batch to its full size with rows whose labels are
ignored (`ignored_label`): integer labels IGNORE_INDEX (-100), float labels (regression, multi-label) NaN,
answer positions beyond the sequence. Every loss here is a mean over the labels it counts, so such rows
change neither the loss nor the gradients. A batch with no counted label at all gives NaN, as in torch.
"""

import numpy as np
from mindspore import ops

IGNORE_INDEX = -100  # label of tokens/rows that take no part in a loss (sub-words, special tokens, padding)
POSITION_COLUMNS = ("start_positions", "end_positions")
LABEL_COLUMNS = ("labels", "next_sentence_label") + POSITION_COLUMNS

_binary_cross_entropy_with_logits = ops.BCEWithLogitsLoss(reduction="none")


def ignored_label(column: str, dtype):
    """The value of label column `column` (numpy `dtype`) that makes its row count for nothing."""
    if column in POSITION_COLUMNS:
        return np.iinfo(dtype).max  # clamped to the sequence length, which the span loss ignores
    return np.nan if np.issubdtype(dtype, np.floating) else IGNORE_INDEX


def _mean(values, counted):
    """Σ values·counted / Σ counted: the mean over the counted entries (`counted` 0/1 in values' dtype)."""
    return ops.div(ops.reduce_sum(ops.mul(values, counted)), ops.reduce_sum(counted))


def _counted_targets(targets, ignore_index):
    """(targets with ignored entries replaced by class 0, which any gather accepts; bool counted mask)."""
    counted = ops.ne(targets, ignore_index)
    return ops.select(counted, targets, ops.zeros_like(targets)), counted


def cross_entropy(logits, targets, ignore_index: int = IGNORE_INDEX):
    """torch.nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index): logits (N, C), integer
    targets (N,); the mean over targets that are not `ignore_index`."""
    safe_targets, counted = _counted_targets(targets, ignore_index)
    log_probs = ops.log_softmax(logits, -1)
    picked = ops.squeeze(ops.gather_elements(log_probs, 1, ops.expand_dims(safe_targets, 1)), 1)
    return _mean(ops.neg(picked), ops.cast(counted, logits.dtype))


def _float_targets(labels, dtype):
    """Float labels in `dtype` with NaN / IGNORE_INDEX entries replaced by 0, and the 0/1 counted weights."""
    targets = ops.cast(labels, dtype)
    counted = ops.logical_and(ops.logical_not(ops.isnan(targets)), ops.ne(targets, IGNORE_INDEX))
    return ops.select(counted, targets, ops.zeros_like(targets)), ops.cast(counted, dtype)


def sequence_classification_loss(logits, labels, problem_type: str):
    """logits (B, num_labels); labels (B,) int for single-label, (B,) float for regression, (B, num_labels)
    0/1 for multi-label. Regression ignores NaN labels only (-100 is a valid target)."""
    if problem_type == "regression":  # MSELoss on the flattened logits, as Hugging Face for num_labels = 1
        predictions = ops.reshape(logits, (-1,))
        targets = ops.reshape(ops.cast(labels, logits.dtype), (-1,))
        counted = ops.logical_not(ops.isnan(targets))
        errors = ops.square(ops.sub(predictions, ops.select(counted, targets, ops.zeros_like(targets))))
        return _mean(errors, ops.cast(counted, logits.dtype))
    if problem_type == "single_label_classification":
        return cross_entropy(logits, ops.reshape(labels, (-1,)))
    if problem_type == "multi_label_classification":  # BCEWithLogitsLoss, element-wise mean
        targets, counted = _float_targets(labels, logits.dtype)
        ones = ops.ones_like(logits)
        return _mean(_binary_cross_entropy_with_logits(logits, targets, ones, ones), counted)
    raise ValueError(f"unknown problem_type {problem_type!r}")


def token_classification_loss(logits, labels, attention_mask):
    """Mean cross-entropy over the attended, labelled tokens: logits (B, T, num_labels), labels (B, T) with
    IGNORE_INDEX where no label applies, attention_mask (B, T) of the real tokens."""
    targets = ops.reshape(labels, (-1,))
    active = ops.equal(ops.reshape(attention_mask, (-1,)), 1)
    targets = ops.select(active, targets, ops.full_like(targets, IGNORE_INDEX))
    return cross_entropy(ops.reshape(logits, (-1, logits.shape[-1])), targets)


def span_extraction_loss(start_logits, end_logits, start_positions, end_positions):
    """Extractive QA: mean of the start and end cross-entropies over (B, T) logits. Positions outside the
    sequence are clamped to T and ignored (answers truncated away), as Hugging Face heads do."""
    outside = start_logits.shape[1]
    start_positions = ops.clamp(ops.reshape(start_positions, (-1,)), 0, outside)
    end_positions = ops.clamp(ops.reshape(end_positions, (-1,)), 0, outside)
    start_loss = cross_entropy(start_logits, start_positions, ignore_index=outside)
    end_loss = cross_entropy(end_logits, end_positions, ignore_index=outside)
    return ops.div(ops.add(start_loss, end_loss), 2.0)


def token_nll(logits, labels):
    """Next-token negative log-likelihood per example: logits (B, T, V) at position t predict labels[:, t+1];
    labels IGNORE_INDEX are ignored. Returns (summed NLL (B,), number of predicted tokens (B,))."""
    batch, length, vocab = logits.shape
    targets = ops.slice(labels, (0, 1), (batch, length - 1))  # (B, T-1)
    safe_targets, counted = _counted_targets(targets, IGNORE_INDEX)
    counted = ops.cast(counted, logits.dtype)
    log_probs = ops.log_softmax(ops.slice(logits, (0, 0, 0), (batch, length - 1, vocab)), -1)  # (B, T-1, V)
    picked = ops.squeeze(ops.gather_elements(log_probs, 2, ops.expand_dims(safe_targets, -1)), -1)  # (B, T-1)
    return ops.neg(ops.reduce_sum(ops.mul(picked, counted), 1)), ops.reduce_sum(counted, 1)


def check_sequence_labels(labels, num_labels: int, problem_type: str, source: str = "dataset") -> None:
    """Refuse labels the loss would silently mis-train on (out-of-range class ids, wrong shapes)."""
    labels = np.asarray(labels)
    if problem_type == "single_label_classification":
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{source}: single-label classification needs integer labels of shape (N,), "
                             f"got {labels.dtype} {labels.shape}")
        bad = np.flatnonzero((labels < 0) | (labels >= num_labels))
        if bad.size:
            raise ValueError(f"{source}: label {labels[bad[0]]} at row {bad[0]} is outside [0, {num_labels}) "
                             f"({bad.size} rows out of range)")
    elif problem_type == "multi_label_classification":
        if labels.ndim != 2 or labels.shape[1] != num_labels or not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{source}: multi-label classification needs 0/1 labels of shape (N, {num_labels}), "
                             f"got {labels.shape}")
    elif not np.all(np.isfinite(labels.astype(np.float64))):
        raise ValueError(f"{source}: regression labels must be finite numbers")
