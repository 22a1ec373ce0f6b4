"""Your own data: `--task text_classification` and `--task token_classification`.

Each split is one file (`--train_file`, `--validation_file`, `--test_file`) in any format of records.py;
`--text_column_names` and `--label_column_name` name its columns (defaults: `text` / `label` for text
classification, a single text or a pair; `tokens` / `tags` for token classification, where a CoNLL file's
columns are the token first and the tag last). The label set comes from the training file (labels.py) and
is saved with the adapter, with the column names, so that `ms-ptuning predict` reads the same columns and
maps back to the same labels. A test split may leave the label out (csv/tsv: no label column; JSON: no
label on its first record; CoNLL: a single column).
"""

from .. import metrics
from .base import TaskDataError
from .classification import TextClassificationTask, first_output
from .files import check_texts, field
from .labels import MULTI, REGRESSION, SINGLE, LabelSet
from .records import TABLES, TEXTUAL, file_format, iter_records
from .registry import get_task, register
from .seqeval import split_tag
from .tagging import TaggingTask

SPLIT_FLAGS = {"train": "--train_file", "validation": "--validation_file", "test": "--test_file"}


def readable(rows):
    """The (Where, record) pairs of `rows`, stopping at the first record that could not be read."""
    for where, record in rows:
        if isinstance(record, TaskDataError):
            raise record
        yield where, record


class OwnFiles:
    """What both own-data tasks share: one file per split, records read with file:line errors, and the
    label set of the training file (read once, when first needed, or given when rebuilt from an adapter)."""

    formats = TABLES
    default_text_columns = ("text",)
    default_label_column = "label"
    text_column_counts = (1, 2)

    def __init__(self, files: dict = None, text_column_names=None, label_column_name=None, label_set=None):
        self.files = {split: path for split, path in (files or {}).items() if path}
        self.text_columns = tuple(text_column_names or self.default_text_columns)
        if len(self.text_columns) not in self.text_column_counts:
            raise TaskDataError(f"task {self.name!r} takes {' or '.join(map(str, self.text_column_counts))} text "
                                f"column name(s), got {', '.join(self.text_columns)}")
        self.label_column = label_column_name or self.default_label_column
        self._label_set = label_set
        self._train_rows = None

    @property
    def splits(self) -> tuple:
        return tuple(split for split in SPLIT_FLAGS if split in self.files)

    @property
    def label_set(self) -> LabelSet:
        if self._label_set is None:
            textual, rows = self._rows("train")
            self._label_set = self.infer_label_set(rows, textual)
        return self._label_set

    @property
    def labels(self) -> tuple:
        return self.label_set.labels

    @property
    def problem_type(self) -> str:
        return self.label_set.problem_type

    def settings(self) -> dict:
        """What the adapter keeps besides the labels, so that predict reads the same columns."""
        return {"text_column_names": list(self.text_columns), "label_column_name": self.label_column}

    def _rows(self, split: str) -> tuple:
        """(textual, [(Where, record or TaskDataError)]) of one split; the training file's are kept, it is read
        for the labels too. Unreadable records stay in place, so the first problem in the file is reported."""
        if split not in SPLIT_FLAGS:
            raise TaskDataError(f"task {self.name!r} has no split {split!r}; its splits are {', '.join(SPLIT_FLAGS)}")
        if split not in self.files:
            raise TaskDataError(f"task {self.name!r}: no {split} data; pass {SPLIT_FLAGS[split]} FILE")
        if split == "train" and self._train_rows is not None:
            return self._train_rows
        path = self.files[split]
        kind = file_format(path, self.formats)
        required = self.text_columns + (() if split == "test" else (self.label_column,))
        rows = list(iter_records(path, kind, required, split, self.text_columns + (self.label_column,)))
        if not rows:
            raise TaskDataError(f"{path}: no data rows")
        if split == "train":
            self._train_rows = (kind in TEXTUAL, rows)
        return kind in TEXTUAL, rows

    def load(self, data_dir, split) -> list:
        """Examples of one split (`data_dir` is not read: the files come from the constructor)."""
        textual, rows = self._rows(split)
        examples, labelled = [], None
        for where, record in readable(rows):
            if labelled is None:  # a test split may come without labels: its first record says
                labelled = split != "test" or record.get(self.label_column) is not None
            examples.append(self.example(where, record, labelled, textual))
        return examples

    def label_value(self, where, record: dict):
        value = record.get(self.label_column)
        if value is None or value == "":
            raise where.error("missing", field=self.label_column)
        return value


class TextClassification(OwnFiles, TextClassificationTask):
    """A text or a pair of texts → a class, several classes, or a number."""

    name = "text_classification"

    @property
    def metric_for_best_model(self) -> str:
        return {SINGLE: "accuracy", MULTI: "f1_micro", REGRESSION: "mse"}[self.problem_type]

    @property
    def greater_is_better(self) -> bool:
        return self.problem_type != REGRESSION

    def infer_label_set(self, rows: list, textual: bool) -> LabelSet:
        observed = [(where, self.label_value(where, record)) for where, record in readable(rows)]
        return LabelSet.infer(observed, textual, self.files["train"], self.label_column)

    def example(self, where, record: dict, labelled: bool, textual: bool = False) -> dict:
        """{"text_a", "text_b" (None for single texts), "label"}; missing, non-text or empty texts are errors."""
        texts = [field(record, name, where, str) for name in self.text_columns]
        check_texts(where, record, self.text_columns)
        label = (self.label_set.encode(self.label_value(where, record), where, textual, self.label_column)
                 if labelled else None)
        return {"text_a": texts[0], "text_b": texts[1] if len(texts) > 1 else None, "label": label}

    def texts(self, example, template_id):
        return example["text_a"], example["text_b"]

    def compute_metrics(self, predictions, dataset) -> dict:
        if "labels" not in dataset.columns:
            raise TaskDataError(f"task {self.name!r}: this split has no labels to score predictions against")
        return metrics.classification_metrics(first_output(predictions), dataset.columns["labels"],
                                              self.problem_type, f1="macro")


class TokenClassification(OwnFiles, TaggingTask):
    """Tokens → one BIO tag each (`O`, `B-TYPE`, `I-TYPE`), scored entity-level as seqeval does."""

    name = "token_classification"
    formats = ("jsonl", "json", "conll", "saved")
    default_text_columns = ("tokens",)
    default_label_column = "tags"
    text_column_counts = (1,)

    def infer_label_set(self, rows: list, textual: bool) -> LabelSet:
        tags = set()
        for where, record in readable(rows):
            tags.update(self._tags(where, record, len(self._tokens(where, record))))
        return LabelSet(SINGLE, sorted(tags), self.files["train"])

    def _tokens(self, where, record: dict) -> list:
        tokens = field(record, self.text_columns[0], where, list)
        if not tokens:
            raise where.error("no tokens", field=self.text_columns[0])
        for index, token in enumerate(tokens):
            if not isinstance(token, str) or not token.strip():
                raise where.at(self.text_columns[0], index).error(f"expected a non-empty string, got {token!r}")
        return tokens

    def _tags(self, where, record: dict, count: int) -> list:
        tags = self.label_value(where, record)
        if not isinstance(tags, list) or len(tags) != count:
            got = f"{len(tags)} tags" if isinstance(tags, list) else repr(tags)
            raise where.error(f"expected a list of {count} tags, one per token, got {got}", field=self.label_column)
        for index, tag in enumerate(tags):
            try:
                split_tag(tag if isinstance(tag, str) else "")
            except ValueError:
                raise where.at(self.label_column, index).error(
                    f"tag {tag!r} is not O, B-<type> or I-<type> (BIO tags, as seqeval scores them)") from None
        return tags

    def example(self, where, record: dict, labelled: bool, textual: bool = False) -> dict:
        tokens = self._tokens(where, record)
        if not labelled:
            return {"words": tokens, "tags": None}
        tags = self._tags(where, record, len(tokens))
        return {"words": tokens, "tags": [self.label_set.encode(tag, where, False, self.label_column) for tag in tags]}


register(TextClassification, TokenClassification)
OWN_DATA_TASKS = {TextClassification.name: TextClassification, TokenClassification.name: TokenClassification}


def column_names(value) -> tuple | None:
    """`a,b` (a flag) or a sequence of names → a tuple of names; None stays None (the task's defaults)."""
    if value is None:
        return None
    names = tuple(name.strip() for name in (value.split(",") if isinstance(value, str) else value))
    if not all(names):
        raise TaskDataError(f"empty column name in {value!r}")
    return names


def task_for(name: str, data_dir: str = None, **flags):
    """The task `--task name` runs. Own-data tasks take `flags` (train_file, validation_file, test_file,
    text_column_names, label_column_name) and no data_dir; built-in tasks read data_dir and refuse the flags."""
    given = sorted(flag for flag, value in flags.items() if value)
    if name not in OWN_DATA_TASKS:
        if given:
            raise TaskDataError(f"--{', --'.join(given)}: only for {' and '.join(OWN_DATA_TASKS)}; task {name!r} "
                                "reads its files from --data_dir")
        return get_task(name)
    if data_dir:
        raise TaskDataError(f"--data_dir is not read by task {name!r}: pass --train_file and --validation_file "
                            "(and --test_file) instead")
    for flag in ("train_file", "validation_file"):
        if not flags.get(flag):
            raise TaskDataError(f"task {name!r} needs --{flag} FILE")
    files = {split: flags.get(f"{split}_file") for split in SPLIT_FLAGS}
    return OWN_DATA_TASKS[name](files, column_names(flags.get("text_column_names")), flags.get("label_column_name"))
