"""Extractive QA on SQuAD v1.1 / v2.0 json files (or a `datasets.save_to_disk` dir of `squad`/`squad_v2`).

Features as the reference builds them: (question, context) windows of `max_length` tokens (384 in the run
scripts) overlapping by `doc_stride` (128), from the fast tokenizer's overflow and offset mapping; a
window that does not contain the answer (and every v2.0 unanswerable question) points at the CLS token.
Predictions: the best (start, end) among the n-best (20) start and end logits of every window of an
example, at most 30 tokens long; v2.0 answers "" when the null score beats it by more than
`null_score_diff_threshold` (a tie answers, as Hugging Face's `postprocess_qa_predictions`).

Ties are broken by an explicit rule, never by the order a sort leaves equal values in (numpy's default
sort orders ties differently on AVX-512 CPUs; the reference inherits torch/numpy's order):
- the n-best starts (ends) of a window: higher logit first, then the earlier token;
- the answer of an example, over the spans of all its windows: higher score, then the earlier start
  character, then the earlier end character (the shortest span).
"""

import collections

import numpy as np

from ..data.dataset import ArrayDataset
from .base import Task, TaskDataError
from .encoding import check_not_empty, effective_max_length, model_inputs, object_column
from .files import (Where, check_split, field, is_saved_dataset, read_json, read_saved_split, split_path)
from .registry import register
from .squad_metric import squad_scores, squad_v2_scores

NOT_CONTEXT = -1  # offset of tokens outside the context (question, special tokens, padding)


def window_labels(offsets, sequence_ids, cls_index: int, answer) -> tuple:
    """(start, end) token positions of `answer` = (text, char start) in one window, or (cls, cls)."""
    if answer is None:
        return cls_index, cls_index
    text, start_char = answer
    end_char = start_char + len(text)
    context = [i for i, sequence in enumerate(sequence_ids) if sequence == 1]
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls_index, cls_index
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, end


def n_best_positions(logits, n_best: int) -> np.ndarray:
    """The `n_best` positions of the highest logits; equal logits rank the earlier position first."""
    return np.argsort(-logits, kind="stable")[:n_best]


def span_rank(span: tuple) -> tuple:
    """Sort key of (score, char start, char end): higher score, then earlier start, then shorter span."""
    score, start, end = span
    return -score, start, end


def best_answer(start_logits, end_logits, offsets, n_best: int, max_answer_length: int) -> tuple:
    """(score, char start, char end) of the best valid span in one window (ties: `span_rank`), or None."""
    starts, ends = n_best_positions(start_logits, n_best), n_best_positions(end_logits, n_best)
    length = ends[None, :] - starts[:, None] + 1  # (n_best, n_best)
    valid = ((offsets[starts, 0] != NOT_CONTEXT)[:, None] & (offsets[ends, 0] != NOT_CONTEXT)[None, :]
             & (length >= 1) & (length <= max_answer_length))
    if not valid.any():
        return None
    i, j = np.nonzero(valid)
    scores = start_logits[starts[i]] + end_logits[ends[j]]
    first_chars, last_chars = offsets[starts[i], 0], offsets[ends[j], 1]
    best = np.lexsort((last_chars, first_chars, -scores))[0]  # span_rank, vectorised (last key first)
    return float(scores[best]), int(first_chars[best]), int(last_chars[best])


class SquadTask(Task):
    name = "squad"
    head = "question_answering"
    labels = ("start", "end")  # the two logits per token, as HF's num_labels=2 for QA
    version_2 = False
    metric_for_best_model = "f1"
    metadata_columns = ("example_index", "offset_mapping", "example_id", "context", "answers")
    split_files = {"train": ("train-v1.1.json", "train.json"), "validation": ("dev-v1.1.json", "dev.json")}
    splits = ("train", "validation")
    saved_splits = {"train": "train", "validation": "validation"}
    max_seq_length = 384  # the reference's QA windows, whatever --max_seq_length says
    doc_stride = 128
    n_best_size = 20
    max_answer_length = 30
    null_score_diff_threshold = 0.0

    def load(self, data_dir, split):
        if is_saved_dataset(data_dir):
            check_split(split, self.saved_splits, self.name)
            rows = read_saved_split(data_dir, self.saved_splits[split], ("id", "question", "context", "answers"))
            examples = [self._saved_example(where, row) for where, row in rows]
        else:
            path = split_path(data_dir, split, self.split_files, self.name)
            examples = self._json_examples(path, read_json(path))
        seen = set()
        for where, example in examples:
            if example["id"] in seen:
                raise where.error(f"duplicate question id {example['id']!r}", field="id")
            seen.add(example["id"])
            if not example["answers"] and not self.version_2:
                raise where.error("no answers (SQuAD v1.1 questions all have one; use squad_v2)",
                                  field="answers")
        return [example for _, example in examples]

    def _json_examples(self, path, document) -> list:
        where = Where(path)
        if not isinstance(document, dict):
            raise where.error(f"expected a JSON object with 'data', got {type(document).__name__}")
        examples = []
        for a, article in enumerate(field(document, "data", where, list)):
            for p, paragraph in enumerate(field(article, "paragraphs", where.at("data", a), list)):
                at_paragraph = where.at("data", a, "paragraphs", p)
                context = field(paragraph, "context", at_paragraph, str)
                for q, qa in enumerate(field(paragraph, "qas", at_paragraph, list)):
                    at_qa = at_paragraph.at("qas", q)
                    answers = [] if qa.get("is_impossible") else field(qa, "answers", at_qa, list)
                    examples.append((at_qa, {
                        "id": field(qa, "id", at_qa, str), "question": field(qa, "question", at_qa, str),
                        "context": context,
                        "answers": [self._answer(answer, context, at_qa.at("answers", i))
                                    for i, answer in enumerate(answers)]}))
        if not examples:
            raise where.error("no questions")
        return examples

    def _saved_example(self, where, row) -> tuple:
        answers = field(row, "answers", where, dict)
        texts = field(answers, "text", where.at("answers"), list)
        starts = field(answers, "answer_start", where.at("answers"), list)
        context = field(row, "context", where, str)
        return where, {"id": field(row, "id", where, str), "question": field(row, "question", where, str),
                       "context": context,
                       "answers": [self._answer({"text": text, "answer_start": start}, context, where.at("answers", i))
                                   for i, (text, start) in enumerate(zip(texts, starts, strict=True))]}

    @staticmethod
    def _answer(answer, context, where) -> tuple:
        text, start = field(answer, "text", where, str), field(answer, "answer_start", where, int)
        if not 0 <= start <= len(context) - len(text):
            raise where.error(f"answer {text!r} at {start} runs outside the context ({len(context)} characters)",
                              field="answer_start")
        return text, start

    def encode(self, examples, tokenizer, max_length, doc_stride=None, **options) -> ArrayDataset:
        check_not_empty(examples, self.name)
        if not tokenizer.is_fast:
            raise TaskDataError(f"task {self.name!r} needs a fast tokenizer (offset mapping); "
                                f"{type(tokenizer).__name__} is not one")
        max_length = effective_max_length(tokenizer, max_length)
        stride = self.doc_stride if doc_stride is None else doc_stride
        if stride >= max_length:
            raise ValueError(f"task {self.name!r}: doc_stride {stride} must be smaller than max_length {max_length} "
                             "(the reference uses --max_seq_length 384 with stride 128)")
        encoded = tokenizer([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                            truncation="only_second", max_length=max_length, stride=stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
        columns = model_inputs(encoded)
        owners = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)  # window → example
        offsets = np.asarray(encoded["offset_mapping"], dtype=np.int32)  # (N, T, 2)
        positions = []
        for window, owner in enumerate(owners):
            sequence_ids = encoded.sequence_ids(window)
            offsets[window, [i for i, sequence in enumerate(sequence_ids) if sequence != 1]] = NOT_CONTEXT
            answers = examples[owner]["answers"]
            cls_index = encoded["input_ids"][window].index(tokenizer.cls_token_id)
            positions.append(window_labels(encoded["offset_mapping"][window], sequence_ids, cls_index,
                                           answers[0] if answers else None))
        columns["start_positions"] = np.asarray([start for start, _ in positions], dtype=np.int64)
        columns["end_positions"] = np.asarray([end for _, end in positions], dtype=np.int64)
        columns["example_index"] = owners
        columns["offset_mapping"] = offsets
        columns["example_id"] = object_column(examples[i]["id"] for i in owners)
        columns["context"] = object_column(examples[i]["context"] for i in owners)
        columns["answers"] = object_column(tuple(text for text, _ in examples[i]["answers"]) for i in owners)
        return ArrayDataset(columns)

    def postprocess(self, predictions, dataset) -> tuple:
        """({id: answer}, {id: best non-null answer}, {id: null score − best answer score}) per example."""
        start_logits, end_logits = split_logits(predictions)
        columns = dataset.columns
        windows = collections.OrderedDict()
        for window, example in enumerate(columns["example_index"]):
            windows.setdefault(int(example), []).append(window)
        answers, best_texts, null_odds = {}, {}, {}
        for example_windows in windows.values():
            first = example_windows[0]
            qid, context = columns["example_id"][first], columns["context"][first]
            # the null answer's score: (start, end) at the CLS token (position 0), the lowest over windows
            null_score = min(float(start_logits[w, 0] + end_logits[w, 0]) for w in example_windows)
            spans = [best_answer(start_logits[w], end_logits[w], columns["offset_mapping"][w],
                                 self.n_best_size, self.max_answer_length) for w in example_windows]
            spans = [span for span in spans if span is not None]
            score, begin, end = min(spans, key=span_rank) if spans else (-np.inf, 0, 0)
            best_texts[qid] = context[begin:end]
            null_odds[qid] = null_score - score
            answered = not self.version_2 or null_odds[qid] <= self.null_score_diff_threshold
            answers[qid] = best_texts[qid] if answered else ""
        return answers, best_texts, null_odds

    def compute_metrics(self, predictions, dataset) -> dict:
        answers, best_texts, null_odds = self.postprocess(predictions, dataset)
        columns = dataset.columns
        references = {qid: list(truths) for qid, truths in zip(columns["example_id"], columns["answers"])}
        if self.version_2:
            return squad_v2_scores(answers, references, null_odds, best_texts)
        return squad_scores(answers, references)


def split_logits(predictions) -> tuple:
    """(start (N, T), end (N, T)) from a (start, end) pair or an (N, T, 2) array."""
    if isinstance(predictions, (tuple, list)) and len(predictions) == 2:
        return np.asarray(predictions[0], np.float64), np.asarray(predictions[1], np.float64)
    predictions = np.asarray(predictions, np.float64)
    if predictions.ndim != 3 or predictions.shape[-1] != 2:
        raise ValueError(f"expected (start, end) logits or an (N, T, 2) array, got shape {predictions.shape}")
    return predictions[..., 0], predictions[..., 1]


class SquadV2(SquadTask):
    name = "squad_v2"
    version_2 = True
    split_files = {"train": ("train-v2.0.json", "train.json"), "validation": ("dev-v2.0.json", "dev.json")}


register(SquadTask, SquadV2)
