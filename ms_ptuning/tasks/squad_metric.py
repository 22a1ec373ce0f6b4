"""Answer-string scores with the official SQuAD normalisation (SQuAD v1.1/v2.0 evaluation scripts; ReCoRD
uses the same): exact match, token F1, v2.0's has-answer/no-answer split and best null threshold."""

import collections
import re
import string

PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    """Bag-of-tokens F1 of the normalised strings; an empty side scores 1 only if both are empty."""
    predicted, true = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not predicted or not true:
        return float(predicted == true)
    same = sum((collections.Counter(predicted) & collections.Counter(true)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(true)
    return 2 * precision * recall / (precision + recall)


def best_over_truths(metric, prediction: str, truths) -> float:
    return max(metric(prediction, truth) for truth in truths)


def gold_answers(answers) -> list:
    """SQuAD v2.0's rule: answers that normalise to nothing are dropped; no answer at all is ``[""]``."""
    return [text for text in answers if normalize_answer(text)] or [""]


def squad_scores(predictions: dict, references: dict) -> dict:
    """SQuAD v1.1: {"exact_match", "f1"} in percent over every question id of `references` ({id: [texts]})."""
    exact = [best_over_truths(exact_match, predictions[qid], truths) for qid, truths in references.items()]
    f1 = [best_over_truths(f1_score, predictions[qid], truths) for qid, truths in references.items()]
    return {"exact_match": 100.0 * sum(exact) / len(exact), "f1": 100.0 * sum(f1) / len(f1)}


def squad_v2_scores(predictions: dict, references: dict, null_odds: dict = None,
                    answer_predictions: dict = None) -> dict:
    """SQuAD v2.0: exact/f1 overall and on HasAns/NoAns questions, in percent.

    With `null_odds` ({id: null score − best answer score}) and `answer_predictions` (the best non-null
    answer of every id), also the threshold on the null odds that would have maximised exact/f1
    (`best_exact_thresh`, `best_f1_thresh`), as the official script's `find_best_thresh`.
    """
    golds = {qid: gold_answers(answers) for qid, answers in references.items()}
    has_answer = {qid: truths != [""] for qid, truths in golds.items()}
    exact = {qid: best_over_truths(exact_match, predictions[qid], truths) for qid, truths in golds.items()}
    f1 = {qid: best_over_truths(f1_score, predictions[qid], truths) for qid, truths in golds.items()}
    result = {"exact": _percent(exact.values()), "f1": _percent(f1.values()), "total": len(golds)}
    for part, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid in golds if has_answer[qid] == wanted]
        if ids:
            result.update({f"{part}_exact": _percent(exact[q] for q in ids),
                           f"{part}_f1": _percent(f1[q] for q in ids), f"{part}_total": len(ids)})
    if null_odds is not None:
        answers = answer_predictions or predictions
        for name, metric in (("exact", exact_match), ("f1", f1_score)):
            answer_scores = {qid: best_over_truths(metric, answers[qid], truths) for qid, truths in golds.items()}
            best, threshold = _best_threshold(answers, answer_scores, null_odds, has_answer)
            result.update({f"best_{name}": best, f"best_{name}_thresh": threshold})
    return result


def _best_threshold(answers: dict, answer_scores: dict, null_odds: dict, has_answer: dict) -> tuple:
    """Start from "no answer everywhere" and switch questions to their answer in order of increasing null
    odds; the best running score and the odds where it was reached."""
    score = best = sum(not has for has in has_answer.values())
    threshold = 0.0
    for qid in sorted(has_answer, key=lambda q: null_odds[q]):
        score += answer_scores[qid] if has_answer[qid] else (-1 if answers[qid] else 0)
        if score > best:
            best, threshold = score, null_odds[qid]
    return 100.0 * best / len(has_answer), float(threshold)


def _percent(values) -> float:
    values = list(values)
    return 100.0 * sum(values) / len(values)
