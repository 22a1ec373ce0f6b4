"""Task metrics against hand-computed values: seqeval entity F1 (BIO/IOB1 chunking), SQuAD EM/F1 with the
official normalisation, SQuAD feature post-processing and the v2 null threshold, multiple-choice accuracy,
GLUE/SuperGLUE scores, ReCoRD."""

import os

import numpy as np
import pytest

from ms_ptuning.data.dataset import concatenate_rows
from ms_ptuning.tasks import get_task
from ms_ptuning.tasks.seqeval import entities, entity_scores
from ms_ptuning.tasks.squad import best_answer
from ms_ptuning.tasks.squad_metric import exact_match, f1_score, normalize_answer, squad_scores, squad_v2_scores
from tiny_tokenizer import build_tokenizer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "tasks")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(str(tmp_path_factory.mktemp("tokenizer")))


def encoded(name, split, tokenizer, **options):
    task = get_task(name)
    return task, task.encode(task.load(os.path.join(FIXTURES, name), split), tokenizer, 64, **options)


# ---- seqeval --------------------------------------------------------------------------------------

def test_chunking_iob2_and_iob1():
    assert entities(["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]) == {("PER", 0, 1), ("LOC", 3, 4)}
    assert entities(["I-PER", "I-PER", "O", "I-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}  # IOB1 starts with I-
    assert entities(["I-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    assert entities(["B-PER", "I-LOC", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}  # a type change starts a chunk
    assert entities(["O", "O"]) == set()
    with pytest.raises(ValueError, match="is not O, B-<type> or I-<type>"):
        entities(["PER"])


def test_entity_scores_by_hand():
    true = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"], ["B-ORG", "O", "B-MISC"]]
    predicted = [["B-PER", "I-PER", "B-MISC", "B-LOC", "O", "O"], ["B-ORG", "O", "B-PER"]]
    # true: PER(0-1) LOC(3-4) | ORG(0) MISC(2); predicted: PER(0-1) MISC(2) LOC(3) | ORG(0) PER(2)
    # correct 2 (PER, ORG) of 5 predicted and 4 true; tokens right 4/6 + 2/3
    scores = entity_scores(true, predicted)
    assert scores["precision"] == pytest.approx(2 / 5)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert scores["accuracy"] == pytest.approx(6 / 9)
    assert entity_scores([["O"]], [["B-PER"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.0}


def test_ner_task_metric_from_logits(tokenizer):
    task, dataset = encoded("conll2003", "validation", tokenizer)
    labels = dataset.columns["labels"]
    predicted = np.where(labels == -100, 0, labels)
    first_tokens = [np.flatnonzero(row != -100) for row in labels]
    predicted[0, first_tokens[0][3]] = task.labels.index("B-ORG")  # Berlin: B-LOC → B-ORG (wrong type)
    predicted[1, first_tokens[1][3]] = task.labels.index("B-MISC")  # news: O → B-MISC (spurious)
    logits = np.eye(task.num_labels)[predicted]  # (N, T, L) one-hot
    scores = task.compute_metrics(logits, dataset)
    # true PER LOC ORG; predicted PER ORG ORG MISC; correct PER and ORG(Reuters): P 2/4, R 2/3, F1 4/7
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(4 / 7)
    assert scores["accuracy"] == pytest.approx(8 / 10)


def test_ner_metric_from_per_batch_padded_predictions(tokenizer):
    """Batches of different widths, concatenated as the Trainer does (padded with -100), score as the
    full-width predictions; a labelled position without a prediction is an error, not a silent miss."""
    task = get_task("conll2003")
    location = task.labels.index("B-LOC")
    examples = [{"words": ["river"] * count + ["Paris"], "tags": [0] * count + [location]} for count in (3, 40)]
    dataset = task.encode(examples, tokenizer, None)
    labels = dataset.columns["labels"]
    full = np.eye(task.num_labels)[np.where(labels == -100, 0, labels)]  # (2, T, L): every tag right
    width = dataset.sequence_width
    batches = [full[[row], :dataset.batch(np.array([row]))["input_ids"].shape[1]] for row in (0, 1)]
    assert [batch.shape[1] for batch in batches] == [32, width] and width > 32
    stacked = concatenate_rows(batches, width)
    assert stacked.shape == full.shape and np.all(stacked[0, 32:] == -100)
    assert task.compute_metrics(stacked, dataset)["f1"] == 1.0
    # narrower predictions (the widest batch of a split of short rows): the labels past them are -100
    assert task.compute_metrics(full[[0], :32], dataset.select(np.array([0])))["f1"] == 1.0
    with pytest.raises(ValueError, match=f"predictions of width 32 miss labelled positions of width {width}"):
        task.compute_metrics(full[:, :32], dataset)


# ---- SQuAD ----------------------------------------------------------------------------------------

def test_squad_normalisation_em_f1():
    assert normalize_answer("The  Eastern-Ridge, of an Old hut!") == "easternridge of old hut"
    assert exact_match("the Stone Hut", "stone hut.") == 1.0
    assert f1_score("the eastern ridge", "eastern ridge of the mountain") == pytest.approx(2 / 3)  # P 1, R 1/2
    assert f1_score("a small stone hut", "stone hut") == pytest.approx(0.8)  # P 2/3, R 1
    assert f1_score("", "") == 1.0 and f1_score("hut", "") == 0.0


def test_squad_v1_scores_by_hand():
    predictions = {"q1": "the eastern ridge", "q2": "a small stone hut", "q3": "ten"}
    references = {"q1": ["the eastern ridge", "eastern ridge"], "q2": ["a small stone hut", "stone hut"],
                  "q3": ["every ten minutes", "ten minutes"]}
    scores = squad_scores(predictions, references)  # q3: F1 max(1/2, 2/3), EM 0
    assert scores["exact_match"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(100 * (2 + 2 / 3) / 3)


def test_squad_v2_scores_and_best_threshold_by_hand():
    references = {"a": ["Elsa Moreno"], "b": [], "c": ["twenty-five minutes"]}
    predictions = {"a": "Elsa Moreno", "b": "", "c": "minutes"}
    scores = squad_v2_scores(predictions, references, null_odds={"a": -2.0, "b": 1.0, "c": 0.5},
                             answer_predictions={"a": "Elsa Moreno", "b": "Elsa Moreno", "c": "minutes"})
    assert scores["exact"] == pytest.approx(200 / 3) and scores["f1"] == pytest.approx(100 * (2 + 2 / 3) / 3)
    assert scores["HasAns_exact"] == pytest.approx(50) and scores["HasAns_f1"] == pytest.approx(100 * (5 / 3) / 2)
    assert scores["NoAns_exact"] == 100 and scores["NoAns_f1"] == 100 and scores["total"] == 3
    # from "no answer everywhere" (1 right) add answers by rising null odds: a +1, c +0 (EM) / +2/3 (F1), b −1
    assert scores["best_exact"] == pytest.approx(200 / 3) and scores["best_exact_thresh"] == -2.0
    assert scores["best_f1"] == pytest.approx(100 * (2 + 2 / 3) / 3) and scores["best_f1_thresh"] == 0.5


def span_logits(dataset, spans):
    """Start/end logits (N, T) that are 10 at the given (window, start, end) spans and 0 elsewhere."""
    start, end = (np.zeros(dataset.columns["input_ids"].shape) for _ in range(2))
    for window, first, last in spans:
        start[window, first] += 10
        end[window, last] += 10
    return start, end


def answer_windows(dataset):
    """{example: first window labelled with its answer span}."""
    columns, windows = dataset.columns, {}
    for window, example in enumerate(columns["example_index"]):
        if columns["start_positions"][window] > 0:
            windows.setdefault(int(example), window)
    return windows


def test_squad_postprocessing_finds_the_span(tokenizer):
    task, dataset = encoded("squad", "validation", tokenizer, doc_stride=16)
    columns = dataset.columns
    windows = answer_windows(dataset)
    assert len(windows) == 3
    spans = [(w, columns["start_positions"][w], columns["end_positions"][w]) for w in windows.values()]
    assert task.compute_metrics(span_logits(dataset, spans), dataset) == {"exact_match": 100.0, "f1": 100.0}
    # a higher-scoring span longer than max_answer_length (30 tokens) or ending before it starts is skipped
    window, first, last = spans[0]
    start, end = span_logits(dataset, spans)
    start[window, 1], end[window, 0] = 50, 50  # position 0/1: not context
    stacked = np.stack([start, end], axis=-1)  # (N, T, 2) is accepted too
    assert task.compute_metrics(stacked, dataset)["exact_match"] == 100.0
    task.max_answer_length = last - first  # one token too short for the first answer
    answers, _, _ = task.postprocess((start, end), dataset)
    assert answers[columns["example_id"][window]] != columns["answers"][window][0]


def context_positions(dataset, window):
    """Token positions of the context in one window, in order."""
    return np.flatnonzero(dataset.columns["offset_mapping"][window][:, 0] >= 0)


def test_squad_v2_null_answer_and_threshold(tokenizer):
    """Every decisive score is unique, so no tie rule (and no CPU's sort order) enters the result."""
    task, dataset = encoded("squad_v2", "validation", tokenizer, doc_stride=16)
    columns = dataset.columns
    windows = answer_windows(dataset)
    spans = [(w, columns["start_positions"][w], columns["end_positions"][w]) for w in windows.values()]
    start, end = span_logits(dataset, spans)  # answerable: one span of score 20, null score 0
    impossible = [w for w in range(len(dataset)) if not columns["answers"][w]]
    start[impossible, 0], end[impossible, 0] = 20, 20  # null score 40 in every window of 6b02
    window = impossible[0]
    first, second = context_positions(dataset, window)[:2]
    start[window, first], end[window, second] = 3, 2  # 6b02's best span scores 5; any other at most 3
    offsets = columns["offset_mapping"][window]
    plausible = columns["context"][window][offsets[first, 0]:offsets[second, 1]]
    assert normalize_answer(plausible) != ""
    scores = task.compute_metrics((start, end), dataset)
    assert scores["exact"] == scores["f1"] == 100.0
    assert scores["HasAns_exact"] == scores["NoAns_exact"] == 100.0 and scores["HasAns_total"] == 2
    answers, best, odds = task.postprocess((start, end), dataset)
    assert answers["6b02"] == "" and best["6b02"] == plausible and odds["6b02"] == 35.0  # null 40 − span 5
    assert odds["6b01"] == odds["6b03"] == -20.0  # null 0 − best span 20
    task.null_score_diff_threshold = 50.0  # now the null answer must win by more than 50: it does not
    scores = task.compute_metrics((start, end), dataset)
    assert task.postprocess((start, end), dataset)[0]["6b02"] == plausible
    assert scores["NoAns_exact"] == 0.0 and scores["exact"] == pytest.approx(200 / 3)
    # answering 6b01 and 6b03 (odds −20) gains 2, answering 6b02 (odds 35) loses 1: best at −20
    assert scores["best_exact"] == 100.0 and scores["best_exact_thresh"] == -20.0
    task.null_score_diff_threshold = 35.0  # a tie answers, as Hugging Face's post-processing
    assert task.postprocess((start, end), dataset)[0]["6b02"] == plausible


def brute_force_best_span(start_logits, end_logits, offsets, n_best, max_answer_length):
    """The documented rule spelled out: n-best positions by (higher logit, earlier position), every valid
    pair, the best by (higher score, earlier start character, earlier end character)."""
    def n_best_of(logits):
        return sorted(range(len(logits)), key=lambda position: (-logits[position], position))[:n_best]

    spans = [(start_logits[s] + end_logits[e], offsets[s][0], offsets[e][1])
             for s in n_best_of(start_logits) for e in n_best_of(end_logits)
             if offsets[s][0] >= 0 and offsets[e][0] >= 0 and 1 <= e - s + 1 <= max_answer_length]
    return min(spans, key=lambda span: (-span[0], span[1], span[2])) if spans else None


def test_squad_span_ties_follow_the_documented_rule():
    offsets = np.array([[-1, -1]] * 3 + [[5 * k, 5 * k + 4] for k in range(9)])  # 3 question tokens, 9 context
    rng = np.random.default_rng(0)
    for _ in range(300):  # logits in {0, 1, 2}: ties everywhere
        start_logits, end_logits = rng.integers(0, 3, (2, len(offsets))).astype(np.float64)
        n_best, max_answer_length = int(rng.choice([2, 4, 12])), int(rng.choice([1, 3, 30]))
        assert best_answer(start_logits, end_logits, offsets, n_best, max_answer_length) == brute_force_best_span(
            start_logits, end_logits, offsets, n_best, max_answer_length)
    flat = np.zeros(len(offsets))
    assert best_answer(flat, flat, offsets, 20, 30) == (0.0, 0, 4)  # all equal: the first one-token span
    ends = flat.copy()
    ends[[5, 7]] = 1.0
    assert best_answer(flat, ends, offsets, 20, 30) == (1.0, 0, 14)  # earliest start, then the shorter span
    starts = flat.copy()
    starts[3:] = 1.0
    assert best_answer(starts, starts, offsets, 2, 30) == (2.0, 0, 4)  # n-best cut among ties: earliest first
    assert best_answer(starts, flat, offsets, 2, 30) is None  # the 2 best ends are question tokens


def test_squad_spans_tied_across_windows_take_the_earliest_start(tokenizer):
    task, dataset = encoded("squad", "validation", tokenizer, doc_stride=16)
    columns = dataset.columns
    first, second = np.flatnonzero(columns["example_index"] == 0)[:2]  # overlapping windows of one question
    late = context_positions(dataset, first)[-1]  # in the overlap: the last context token of the first window
    early = context_positions(dataset, second)[0]  # the first context token of the second window
    assert columns["offset_mapping"][second][early, 0] < columns["offset_mapping"][first][late, 0]
    start, end = (np.zeros(columns["input_ids"].shape) for _ in range(2))
    start[first, late], end[first, late] = 4, 4
    start[second, early], end[second, early] = 4, 4
    answers, _, _ = task.postprocess((start, end), dataset)
    offsets = columns["offset_mapping"][second][early]
    assert answers[columns["example_id"][first]] == columns["context"][first][offsets[0]:offsets[1]]


# ---- classification / multiple choice / ReCoRD ----------------------------------------------------

def test_multiple_choice_accuracy(tokenizer):
    task, dataset = encoded("copa", "train", tokenizer)
    assert list(dataset.columns["labels"]) == [0, 1, 0, 1]
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [-1.0, 1.0]])  # argmax 1, 0, 0, 1
    assert task.compute_metrics(logits, dataset) == {"accuracy": 0.5}


def one_hot(predicted, classes):
    return np.eye(classes)[predicted]


def test_glue_and_superglue_scores(tokenizer):
    task, dataset = encoded("cola", "validation", tokenizer)  # labels 1 0 1
    # predicted 1 0 0: TP 1, TN 1, FN 1, FP 0 → MCC 1 / sqrt(1·2·1·2)
    assert task.compute_metrics(one_hot([1, 0, 0], 2), dataset) == {"matthews_correlation": pytest.approx(0.5)}
    task, dataset = encoded("mrpc", "validation", tokenizer)  # labels 1 0 1; predicted 1 1 0: acc 1/3, F1 1/2
    assert task.compute_metrics(one_hot([1, 1, 0], 2), dataset) == pytest.approx(
        {"accuracy": 1 / 3, "f1": 0.5, "combined_score": (1 / 3 + 0.5) / 2})
    task, dataset = encoded("stsb", "validation", tokenizer)
    scores = task.compute_metrics((dataset.columns["labels"] * 2 + 1)[:, None], (dataset))
    assert scores == pytest.approx({"pearson": 1.0, "spearmanr": 1.0, "combined_score": 1.0})
    task, dataset = encoded("cb", "validation", tokenizer)  # labels 0 2 0; predicted 0 1 0
    # macro F1 over classes {0, 1, 2}: 1, 0, 0
    assert task.compute_metrics(one_hot([0, 1, 0], 3), dataset) == pytest.approx(
        {"accuracy": 2 / 3, "f1": 1 / 3, "combined_score": 0.5})
    task, dataset = encoded("multirc", "validation", tokenizer)  # labels 1 0 1; predicted 1 1 1: F1 2·2/(3+2)
    assert task.compute_metrics(one_hot([1, 1, 1], 2), dataset) == {"f1": pytest.approx(0.8)}


def test_record_picks_the_entity_with_the_highest_log_odds(tokenizer):
    task, dataset = encoded("record", "validation", tokenizer)
    # rows: query 0 × [Hillside, Oak Park, Rivertown, Sam Hill] (answer Oak Park), query 1 × same (Sam Hill)
    logits = np.array([[5.0, 4.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0],  # Oak Park: log-odds 2 > Hillside's −1
                       [0.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0]])  # Rivertown: wrong
    assert task.compute_metrics(logits, dataset) == {"exact_match": 0.5, "f1": 0.5}
