"""Losses of the task heads, as Hugging Face heads and the reference compute them.

Written with mindtorch's functional API, the same kernels mindnlp's own Hugging Face heads use, so the losses
match the reference's torch losses op for op.
"""

import numpy as np

from .backend import torch

F = torch.nn.functional


def sequence_classification_loss(logits, labels, problem_type: str):
    """logits (B, num_labels); labels (B,) int for single-label, (B,) float for regression,
    (B, num_labels) 0/1 for multi-label."""
    if problem_type == "regression":
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.long())
    if problem_type == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")


IGNORE_INDEX = -100  # label of tokens that take no part in a token-level loss (sub-words, special tokens)


def token_classification_loss(logits, labels, attention_mask):
    """Mean cross-entropy over the attended, labelled tokens: logits (B, T, num_labels), labels (B, T) with
    IGNORE_INDEX where no label applies, attention_mask (B, T) of the real tokens."""
    targets = labels.reshape(-1).long()
    active = attention_mask.reshape(-1) == 1
    targets = torch.where(active, targets, torch.full_like(targets, IGNORE_INDEX))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=IGNORE_INDEX)


def span_extraction_loss(start_logits, end_logits, start_positions, end_positions):
    """Extractive QA: mean of the start and end cross-entropies over (B, T) logits. Positions outside the
    sequence are clamped to T and ignored (answers truncated away), as Hugging Face heads do."""
    outside = start_logits.shape[1]
    start_positions = start_positions.reshape(-1).long().clamp(0, outside)
    end_positions = end_positions.reshape(-1).long().clamp(0, outside)
    start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=outside)
    end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=outside)
    return (start_loss + end_loss) / 2


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
