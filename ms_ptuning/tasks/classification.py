"""Sentence and sentence-pair classification/regression (GLUE, SuperGLUE): texts → the
sequence_classification columns, scored with ms_ptuning.metrics."""

import numpy as np

from .. import metrics
from ..data.dataset import ArrayDataset
from .base import Task, TaskDataError
from .encoding import check_not_empty, encode_texts

TEMPLATE_IDS = (0, 1)


def first_output(predictions):
    """The logits when the model returned several outputs."""
    return predictions[0] if isinstance(predictions, (tuple, list)) else predictions


def dataset_labels(dataset: ArrayDataset, task_name: str) -> np.ndarray:
    if "labels" not in dataset.columns:
        raise TaskDataError(f"task {task_name!r}: this split has no labels to score predictions against")
    return dataset.columns["labels"]


def labels_column(examples: list, dtype) -> dict:
    """{"labels": (N,)} when every example has a label, {} for an unlabelled (test) split."""
    labels = [example["label"] for example in examples]
    if all(label is None for label in labels):
        return {}
    if any(label is None for label in labels):
        raise TaskDataError("a split mixes labelled and unlabelled examples")
    return {"labels": np.asarray(labels, dtype=dtype)}


def score(scorers: dict, predicted, labels) -> dict:
    """{metric: value}; several metrics also get their mean as `combined_score`, as the reference reports."""
    result = {name: scorer(predicted, labels) for name, scorer in scorers.items()}
    if len(result) > 1:
        result["combined_score"] = float(np.mean(list(result.values())))
    return result


def check_template_id(template_id: int, task_name: str) -> int:
    if template_id not in TEMPLATE_IDS:
        raise ValueError(f"task {task_name!r}: template_id must be one of {TEMPLATE_IDS}, got {template_id!r}")
    return template_id


class TextClassificationTask(Task):
    """Examples carry their texts and `label` (class id, float for regression, None when unlabelled)."""

    scorers = {"accuracy": metrics.accuracy}  # metric name → fn(predicted, labels)

    def texts(self, example: dict, template_id: int) -> tuple:
        """(first text, second text or None) the tokenizer gets for one example."""
        raise TypeError(f"{type(self).__name__} must define texts() or override encode()")

    def encode(self, examples, tokenizer, max_length, template_id=0, **options) -> ArrayDataset:
        check_not_empty(examples, self.name)
        check_template_id(template_id, self.name)
        pairs = [self.texts(example, template_id) for example in examples]
        second = [b for _, b in pairs]
        columns = encode_texts(tokenizer, [a for a, _ in pairs], None if second[0] is None else second, max_length)
        regression = self.problem_type == "regression"
        columns.update(labels_column(examples, np.float32 if regression else np.int64))
        return ArrayDataset(columns)

    def compute_metrics(self, predictions, dataset) -> dict:
        logits = np.asarray(first_output(predictions))
        predicted = logits.reshape(-1) if self.problem_type == "regression" else logits.argmax(axis=-1)
        return score(self.scorers, predicted, dataset_labels(dataset, self.name))
