"""Classification and regression metrics (numpy/scipy), matching scikit-learn's definitions."""

import numpy as np
from scipy import stats


def accuracy(predictions, labels) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1_binary(predictions, labels, positive: int = 1) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    true_positive = np.sum((predictions == positive) & (labels == positive))
    predicted, actual = np.sum(predictions == positive), np.sum(labels == positive)
    return float(2 * true_positive / (predicted + actual)) if predicted + actual else 0.0


def f1_macro(predictions, labels) -> float:
    classes = np.union1d(np.unique(predictions), np.unique(labels))
    return float(np.mean([f1_binary(predictions, labels, positive=c) for c in classes]))


def matthews_corrcoef(predictions, labels) -> float:
    """Multiclass MCC (Gorodkin's R_K), equal to the binary formula for two classes."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    classes = np.union1d(np.unique(predictions), np.unique(labels))
    confusion = np.array([[np.sum((labels == t) & (predictions == p)) for p in classes] for t in classes],
                         dtype=np.float64)
    total, correct = confusion.sum(), np.trace(confusion)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominator = np.sqrt((total ** 2 - predicted @ predicted) * (total ** 2 - actual @ actual))
    return float((correct * total - predicted @ actual) / denominator) if denominator else 0.0


def pearson(predictions, labels) -> float:
    return float(stats.pearsonr(np.asarray(predictions, np.float64), np.asarray(labels, np.float64))[0])


def spearman(predictions, labels) -> float:
    return float(stats.spearmanr(np.asarray(predictions, np.float64), np.asarray(labels, np.float64))[0])


def classification_metrics(logits, labels, problem_type: str = "single_label_classification",
                           f1: str = "binary") -> dict:
    """Metrics from raw head outputs: argmax for single-label, logit > 0 for multi-label, the value itself
    for regression. `f1`: "binary", "macro" or "none"."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if problem_type == "regression":
        values = logits.reshape(-1)
        return {"pearson": pearson(values, labels), "spearmanr": spearman(values, labels),
                "mse": float(np.mean((values - labels.reshape(-1)) ** 2))}
    if problem_type == "multi_label_classification":
        predicted = (logits > 0).astype(np.int64)
        return {"exact_match": float(np.mean(np.all(predicted == labels, axis=1))),
                "f1_micro": f1_binary(predicted.reshape(-1), labels.reshape(-1))}
    predicted = logits.argmax(axis=-1)
    result = {"accuracy": accuracy(predicted, labels)}
    if f1 == "binary":
        result["f1"] = f1_binary(predicted, labels)
    elif f1 == "macro":
        result["f1"] = f1_macro(predicted, labels)
    return result
