"""P@k of knowledge probing: is the object among the k best-scored candidate answers?"""

import numpy as np


def candidate_ranks(logits: np.ndarray, labels: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """logits (N, V) at the answer position, labels (N,) object ids, candidate_ids (C,): the answers ranked
    (the shared vocabulary, as the reference ranks only its allowed vocab). Returns (N,) ranks: how many
    candidates score strictly higher than the object (ties resolved in the object's favour).

    A label outside the candidates could never be ranked, so it raises instead of counting as a miss."""
    candidate_ids = np.sort(candidate_ids)
    outside = sorted(set(labels.tolist()) - set(candidate_ids.tolist()))
    if outside:
        raise ValueError(f"object ids {outside[:10]} are not among the candidate answers; "
                         "filter facts and candidates with the same VocabFilter")
    scores = logits[:, candidate_ids]  # (N, C)
    label_scores = scores[np.arange(len(labels)), np.searchsorted(candidate_ids, labels)]
    return (scores > label_scores[:, None]).sum(axis=1)


def precision_from_ranks(ranks: np.ndarray, ks=(1, 10)) -> dict:
    return {f"P@{k}": float(np.mean(ranks < k)) for k in ks}


def precision_at_k(logits: np.ndarray, labels: np.ndarray, candidate_ids: np.ndarray, ks=(1, 10)) -> dict:
    """{"P@k": fraction of objects among the k best-scored candidates} (see `candidate_ranks`)."""
    return precision_from_ranks(candidate_ranks(logits, labels, candidate_ids), ks)


class RankMetrics:
    """The Trainer's `preprocess_logits_for_metrics` and `compute_metrics` for knowledge probing: each batch's
    logits (B, V) become the objects' candidate ranks (B,) at once, so an evaluation never holds N × V
    logits; P@1 and P@10 come from the ranks."""

    def __init__(self, candidate_ids: np.ndarray):
        self.candidate_ids = candidate_ids

    def ranks(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return candidate_ranks(logits, labels, self.candidate_ids)

    def __call__(self, prediction) -> dict:
        return precision_from_ranks(prediction.predictions)
