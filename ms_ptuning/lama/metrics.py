"""P@k of knowledge probing: is the object among the k best-scored candidate answers?"""

import numpy as np


def precision_at_k(logits: np.ndarray, labels: np.ndarray, candidate_ids: np.ndarray, ks=(1, 10)) -> dict:
    """logits (N, V) at the answer position, labels (N,) object ids, candidate_ids (C,): the answers ranked
    (the shared vocabulary, as the reference ranks only its allowed vocab). Returns {"P@k": fraction}.

    A label outside the candidates could never be ranked, so it raises instead of counting as a miss."""
    candidate_ids = np.sort(candidate_ids)
    outside = sorted(set(labels.tolist()) - set(candidate_ids.tolist()))
    if outside:
        raise ValueError(f"object ids {outside[:10]} are not among the candidate answers; "
                         "filter facts and candidates with the same VocabFilter")
    scores = logits[:, candidate_ids]  # (N, C)
    label_scores = scores[np.arange(len(labels)), np.searchsorted(candidate_ids, labels)]
    # rank = number of candidates scored strictly higher (ties resolved in the object's favour)
    ranks = (scores > label_scores[:, None]).sum(axis=1)
    return {f"P@{k}": float(np.mean(ranks < k)) for k in ks}
