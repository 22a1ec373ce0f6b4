"""ROUGE-1/2/L and BLEU-4 of generated responses, as THUDM's ChatGLM-6B ptuning/main.py reports them.

Per example: ROUGE F1 × 100 (rouge_chinese) over jieba's words, BLEU-4 × 100 (nltk's sentence_bleu with
smoothing method 3) over characters, each rounded to 4 decimals; the corpus score is their mean. An empty
prediction or reference (after jieba, nothing but spaces) scores 0 ROUGE, which rouge_chinese refuses to
compute. Needs `jieba`, `rouge_chinese` and `nltk` (no nltk data is downloaded).
"""

import numpy as np

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4")


def _libraries():
    try:
        import jieba
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
        from rouge_chinese import Rouge
    except ImportError as error:
        raise ImportError(f"chat metrics need jieba, rouge_chinese and nltk ({error}); "
                          "pip install jieba rouge_chinese nltk") from None
    jieba.setLogLevel(60)  # no "Building prefix dict" chatter on stderr
    return jieba, Rouge(), sentence_bleu, SmoothingFunction().method3


def example_scores(prediction: str, reference: str, libraries=None) -> dict:
    """{rouge-1, rouge-2, rouge-l, bleu-4} of one prediction against its reference, each × 100."""
    jieba, rouge, sentence_bleu, smoothing = libraries or _libraries()
    hypothesis_words = " ".join(jieba.cut(prediction))
    reference_words = " ".join(jieba.cut(reference))
    if hypothesis_words.split() and reference_words.split():
        rouge_scores = rouge.get_scores(hypothesis_words, reference_words)[0]
        scores = {name: round(rouge_scores[name]["f"] * 100, 4) for name in METRICS[:3]}
    else:
        scores = {name: 0.0 for name in METRICS[:3]}
    bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=smoothing)
    scores["bleu-4"] = round(float(bleu) * 100, 4)
    return scores


def corpus_scores(predictions, references) -> tuple[dict, list]:
    """(the mean of each metric over the examples, the per-example scores)."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    libraries = _libraries()
    per_example = [example_scores(p, r, libraries) for p, r in zip(predictions, references)]
    return {name: float(np.mean([scores[name] for scores in per_example])) for name in METRICS}, per_example
