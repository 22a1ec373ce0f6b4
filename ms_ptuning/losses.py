"""Losses by `problem_type`, as Hugging Face heads and the reference compute them.

Written with mindtorch's functional API, not `mindspore.ops`: MindSpore's composite loss functions
(`ops.cross_entropy`, ...) use Tensor operators internally, which mindnlp reroutes through mindtorch, and
their gradients then come out as zeros. mindtorch's own losses differentiate correctly.
"""

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
