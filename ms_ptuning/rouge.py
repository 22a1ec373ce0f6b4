"""Character-level ROUGE-1, ROUGE-2 and ROUGE-L F1 for Chinese.

Common ROUGE packages split on whitespace or keep only [a-z0-9] tokens, so unsegmented Chinese text
scores 0 or 1 as a single "word". Here every non-whitespace character is one unit, case-folded; F is the
harmonic mean of precision and recall (β = 1), and corpus scores are the mean over pairs.
"""

from collections import Counter

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")


def characters(text: str) -> list:
    return [char for char in text.lower() if not char.isspace()]


def _f1(overlap: int, candidate_total: int, reference_total: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / candidate_total, overlap / reference_total
    return 2 * precision * recall / (precision + recall)


def ngrams(units: list, n: int) -> Counter:
    return Counter(tuple(units[i:i + n]) for i in range(len(units) - n + 1))


def rouge_n(candidate: list, reference: list, n: int) -> float:
    """F1 of n-gram overlap, each n-gram counted at most as often as it occurs in the other text."""
    cand, ref = ngrams(candidate, n), ngrams(reference, n)
    overlap = sum((cand & ref).values())
    return _f1(overlap, sum(cand.values()), sum(ref.values()))


def lcs_length(a: list, b: list) -> int:
    """Longest common subsequence by dynamic programming, one row at a time: O(len(a)·len(b))."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: list, reference: list) -> float:
    return _f1(lcs_length(candidate, reference), len(candidate), len(reference))


def rouge_scores(candidate: str, reference: str) -> dict:
    cand, ref = characters(candidate), characters(reference)
    return {"rouge-1": rouge_n(cand, ref, 1), "rouge-2": rouge_n(cand, ref, 2), "rouge-l": rouge_l(cand, ref)}


def corpus_rouge(candidates: list, references: list) -> dict:
    """Mean per-pair F1 of each ROUGE variant."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need equally many candidates and references, at least one; got "
                         f"{len(candidates)} and {len(references)}")
    scores = [rouge_scores(c, r) for c, r in zip(candidates, references)]
    return {key: sum(score[key] for score in scores) / len(scores) for key in ROUGE_KEYS}
