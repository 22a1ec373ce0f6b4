"""SuperGLUE from the official jsonl files (train.jsonl / val.jsonl / test.jsonl) or from a Hugging Face
`DatasetDict.save_to_disk` directory of the `super_glue` dataset.

Every jsonl record is flattened to the HF dataset's fields (WSC's `target`, MultiRC's and ReCoRD's nested
questions), so both sources give the same examples. Inputs follow the reference: WiC/WSC by `template_id`,
COPA as multiple choice, ReCoRD as one binary (passage, query-with-entity) pair per candidate entity.
"""

import numpy as np

from .. import metrics
from ..data.dataset import ArrayDataset
from .classification import TextClassificationTask, dataset_labels, first_output, labels_column
from .encoding import check_not_empty, encode_texts, object_column
from .files import (check_split, check_texts, field, is_saved_dataset, label_id, read_jsonl, read_saved_split,
                    split_path)
from .registry import register
from .squad_metric import best_over_truths, exact_match, f1_score

NOT_LABELLED = -1  # the label HF's super_glue dataset gives test rows


class SuperGlueTask(TextClassificationTask):
    fields = {}  # HF field name → type, checked on every example
    raw_label_values = (False, True)  # labels as the jsonl files write them, in label-id order
    labels = ("False", "True")  # HF label names
    split_files = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
    splits = ("train", "validation", "test")
    saved_splits = {"train": "train", "validation": "validation", "test": "test"}
    label_columns = ("label",)  # what a saved dataset must have besides `fields`
    file_hint = " (SuperGLUE jsonl) or a datasets.save_to_disk directory (dataset_dict.json)"

    def load(self, data_dir, split):
        saved = is_saved_dataset(data_dir)
        if saved:
            check_split(split, self.saved_splits, self.name)
            label_names = self.labels if "label" in self.label_columns else None
            rows = read_saved_split(data_dir, self.saved_splits[split], tuple(self.fields) + self.label_columns,
                                    label_names)
        else:
            path = split_path(data_dir, split, self.split_files, self.name, hint=self.file_hint)
            rows = [flat for where, record in read_jsonl(path) for flat in self.flatten(where, record)]
        examples = []
        for where, row in rows:
            example = {name: field(row, name, where, kind) for name, kind in self.fields.items()}
            check_texts(where, example, [name for name, kind in self.fields.items() if kind is str])
            example["label"] = self.label(where, row, split, saved)
            self.check(where, example)
            examples.append(example)
        return examples

    def flatten(self, where, record):
        """(Where, row with the HF fields) for each example a jsonl record holds."""
        yield where, record

    def label(self, where, row, split, saved):
        raw = row.get("label")
        if raw is None or (saved and raw == NOT_LABELLED):
            if split == "test":
                return None
            raise where.error("missing", field="label")
        if saved:
            return field(row, "label", where, int)
        return label_id(raw, self.raw_label_values, where)

    def check(self, where, example) -> None:
        """Task-specific consistency checks of one example."""


class BoolQ(SuperGlueTask):
    name = "boolq"
    fields = {"question": str, "passage": str}

    def texts(self, example, template_id):
        return example["question"], example["passage"]


class Cb(SuperGlueTask):
    name = "cb"
    labels = ("entailment", "contradiction", "neutral")
    raw_label_values = labels
    fields = {"premise": str, "hypothesis": str}
    scorers = {"accuracy": metrics.accuracy, "f1": metrics.f1_macro}

    def texts(self, example, template_id):
        return example["premise"], example["hypothesis"]


class Rte(Cb):
    name = "rte"
    labels = ("entailment", "not_entailment")
    raw_label_values = labels
    scorers = {"accuracy": metrics.accuracy}
    file_hint = SuperGlueTask.file_hint + "; for GLUE's RTE tsv files use --task glue_rte"


class Wic(SuperGlueTask):
    name = "wic"
    fields = {"word": str, "sentence1": str, "sentence2": str}

    def texts(self, example, template_id):
        word, first, second = example["word"], example["sentence1"], example["sentence2"]
        if template_id == 0:
            return f"{first} {second} Does {word} have the same meaning in both sentences?", None
        return f"{word}: {first}", f"{word}: {second}"


class Wsc(SuperGlueTask):
    name = "wsc"
    fields = {"text": str, "span1_index": int, "span1_text": str, "span2_index": int, "span2_text": str}

    def flatten(self, where, record):
        target = field(record, "target", where, dict)
        yield where, {**record, **target}

    def check(self, where, example):
        words = example["text"].split()
        if not 0 <= example["span2_index"] < len(words):
            raise where.error(f"word index {example['span2_index']} outside the text's {len(words)} words",
                              field="span2_index")

    def texts(self, example, template_id):
        if template_id == 0:
            return f"{example['span2_text']}: {example['text']}", example["span1_text"]
        words = example["text"].split()
        words[example["span2_index"]] = f"*{words[example['span2_index']]}*"
        return " ".join(words), example["span1_text"]


class MultiRc(SuperGlueTask):
    """One binary example per (paragraph, question, candidate answer)."""

    name = "multirc"
    fields = {"paragraph": str, "question": str, "answer": str}
    raw_label_values = (0, 1)
    scorers = {"f1": metrics.f1_binary}
    metric_for_best_model = "f1"

    def flatten(self, where, record):
        passage = field(record, "passage", where, dict)
        paragraph = field(passage, "text", where.at("passage"), str)
        for q, question in enumerate(field(passage, "questions", where.at("passage"), list)):
            at_question = where.at("passage", "questions", q)
            text = field(question, "question", at_question, str)
            for a, answer in enumerate(field(question, "answers", at_question, list)):
                at_answer = at_question.at("answers", a)
                yield at_answer, {"paragraph": paragraph, "question": text,
                                  "answer": field(answer, "text", at_answer, str), "label": answer.get("label")}

    def texts(self, example, template_id):
        return example["paragraph"], f"{example['question']} {example['answer']}"


class Copa(SuperGlueTask):
    """Multiple choice: "premise because/so" paired with each alternative."""

    name = "copa"
    head = "multiple_choice"
    labels = ("choice1", "choice2")
    raw_label_values = (0, 1)
    fields = {"premise": str, "choice1": str, "choice2": str, "question": str}
    connectives = {"cause": "because", "effect": "so"}

    def check(self, where, example):
        if example["question"] not in self.connectives:
            raise where.error(f"expected 'cause' or 'effect', got {example['question']!r}", field="question")

    def encode(self, examples, tokenizer, max_length, **options):
        check_not_empty(examples, self.name)
        stems = [f"{e['premise']} {self.connectives[e['question']]}" for e in examples for _ in self.labels]
        choices = [e[choice] for e in examples for choice in self.labels]
        flat = encode_texts(tokenizer, stems, choices, max_length)  # (N·C, T)
        columns = {name: values.reshape(len(examples), len(self.labels), -1) for name, values in flat.items()}
        columns.update(labels_column(examples, np.int64))
        return ArrayDataset(columns)

    def compute_metrics(self, predictions, dataset):
        choice_scores = np.asarray(first_output(predictions))  # (N, C)
        return {"accuracy": metrics.accuracy(choice_scores.argmax(axis=-1), dataset_labels(dataset, self.name))}


class Record(SuperGlueTask):
    """Cloze-style QA scored as binary classification of every candidate entity in the query's placeholder;
    per query the entity with the highest log-odds is the answer (equal log-odds: the first entity in
    sorted order), scored by SQuAD EM/F1 (0-1)."""

    name = "record"
    labels = ("0", "1")
    fields = {"passage": str, "query": str, "entities": list}
    metadata_columns = ("question_index", "entity", "answers")
    metric_for_best_model = "f1"
    label_columns = ("answers",)

    def flatten(self, where, record):
        passage = field(record, "passage", where, dict)
        text = field(passage, "text", where.at("passage"), str)
        entities = [self._span_text(text, span, where.at("passage", "entities", i))
                    for i, span in enumerate(field(passage, "entities", where.at("passage"), list))]
        for q, qa in enumerate(field(record, "qas", where, list)):
            at_query = where.at("qas", q)
            answers = qa.get("answers")
            yield at_query, {"passage": text, "query": field(qa, "query", at_query, str),
                             "entities": sorted(set(entities)),
                             "answers": None if answers is None else sorted({
                                 field(answer, "text", at_query.at("answers", a), str)
                                 for a, answer in enumerate(answers)})}

    @staticmethod
    def _span_text(text, span, where):
        start, end = field(span, "start", where, int), field(span, "end", where, int)  # end inclusive
        if not 0 <= start <= end < len(text):
            raise where.error(f"entity span {start}..{end} outside the passage ({len(text)} characters)")
        return text[start:end + 1]

    def label(self, where, row, split, saved):
        """The answer texts stand in for the label; None when unlabelled."""
        answers = row.get("answers")
        if not answers:
            if split == "test":
                return None
            raise where.error("missing", field="answers")
        return tuple(answers)

    def check(self, where, example):
        if not example["entities"]:
            raise where.error("no candidate entities", field="entities")
        if "@placeholder" not in example["query"]:
            raise where.error("no @placeholder to fill", field="query")

    def encode(self, examples, tokenizer, max_length, **options):
        check_not_empty(examples, self.name)
        rows = [(index, example, entity) for index, example in enumerate(examples) for entity in example["entities"]]
        passages = [example["passage"].replace("@highlight\n", "- ") for _, example, _ in rows]
        queries = [example["query"].replace("@placeholder", entity) for _, example, entity in rows]
        columns = encode_texts(tokenizer, passages, queries, max_length)
        answers = [example["label"] for _, example, _ in rows]
        if all(answer is not None for answer in answers):
            columns["labels"] = np.asarray([entity in answer for (_, _, entity), answer in zip(rows, answers)],
                                           dtype=np.int64)
        columns["question_index"] = np.asarray([index for index, _, _ in rows], dtype=np.int64)
        columns["entity"] = object_column(entity for _, _, entity in rows)
        columns["answers"] = object_column(answers)
        return ArrayDataset(columns)

    def compute_metrics(self, predictions, dataset):
        logits = np.asarray(first_output(predictions), dtype=np.float64)  # (N, 2)
        dataset_labels(dataset, self.name)  # raises for an unlabelled split
        columns = dataset.columns
        best = {}  # question → (log-odds, entity, answers)
        for odds, question, entity, answers in zip(logits[:, 1] - logits[:, 0], columns["question_index"],
                                                   columns["entity"], columns["answers"]):
            if question not in best or odds > best[question][0]:
                best[question] = (odds, entity, answers)
        exact = [best_over_truths(exact_match, entity, answers) for _, entity, answers in best.values()]
        f1 = [best_over_truths(f1_score, entity, answers) for _, entity, answers in best.values()]
        return {"exact_match": float(np.mean(exact)), "f1": float(np.mean(f1))}


register(BoolQ, Cb, Rte, Wic, Wsc, MultiRc, Copa, Record)
