"""Reading task files (tsv, jsonl, json, Hugging Face `save_to_disk` dirs) with errors naming file:line:field.

Every reader returns rows paired with a `Where`, so that a bad value found later (an unknown label, a
missing field) can still be reported at its place in the file.
"""

import json
import math
import os

from .base import TaskDataError


class Where:
    """A place in the data: a path, a line number or row ("row 3"), and a path inside a JSON value."""

    def __init__(self, path: str, position="", json_path: str = ""):
        self.path = path
        self.position = str(position)
        self.json_path = json_path

    def __str__(self) -> str:
        place = f"{self.path}:{self.position}" if self.position else self.path
        return f"{place} {self.json_path}" if self.json_path else place

    def at(self, *keys) -> "Where":
        """Deeper into a JSON value: `at("qas", 2)` → `... qas[2]`."""
        json_path = self.json_path
        for key in keys:
            json_path += f"[{key}]" if isinstance(key, int) else (f".{key}" if json_path else key)
        return Where(self.path, self.position, json_path)

    def error(self, message: str, field: str = "") -> TaskDataError:
        return TaskDataError(f"{self}: field {field!r}: {message}" if field else f"{self}: {message}")


def check_data_dir(data_dir: str) -> None:
    if not data_dir:
        raise TaskDataError("no data directory given: pass --data_dir with the task's files")
    if not os.path.isdir(data_dir):
        raise TaskDataError(f"{data_dir}: data directory not found")


def check_split(split: str, splits, task_name: str) -> None:
    if split not in splits:
        raise TaskDataError(f"task {task_name!r} has no split {split!r}; its splits are {', '.join(splits)}")


def split_path(data_dir: str, split: str, split_files: dict, task_name: str, hint: str = "") -> str:
    """The file of one split: the first of `split_files[split]` (a name or a tuple of names) that exists."""
    check_data_dir(data_dir)
    check_split(split, split_files, task_name)
    names = split_files[split] if isinstance(split_files[split], tuple) else (split_files[split],)
    for name in names:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise TaskDataError(f"{data_dir}: missing {split} split of task {task_name!r}: expected file "
                        f"{' or '.join(names)}{hint}")


def read_text(path: str) -> str:
    """The whole file as text: strict UTF-8 (a leading BOM is dropped), never empty."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = data.rfind(b"\n", 0, error.start) + 1
        line = data.count(b"\n", 0, error.start) + 1
        raise TaskDataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at column "
                            f"{error.start - line_start + 1})") from None
    if not text.strip():
        raise TaskDataError(f"{path}: file is empty")
    return text


def read_lines(path: str) -> list:
    """Lines without their line breaks (\n or \r\n); line n of the file is element n - 1."""
    return [line.rstrip("\r") for line in read_text(path).split("\n")]


def read_tsv(path: str, headerless_columns: tuple = ()) -> tuple:
    """(column names, [(Where, {column: value})]) of a tab-separated file with a header row.

    Files without a header (CoLA's train/dev) pass their column names as `headerless_columns`; a file
    whose first field is `index` is taken to have a header anyway (CoLA's test.tsv does).
    """
    lines = read_lines(path)
    first = lines[0].split("\t")
    has_header = not headerless_columns or first[0] == "index"
    columns = first if has_header else list(headerless_columns)
    rows = []
    for number, line in enumerate(lines[1:] if has_header else lines, start=2 if has_header else 1):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(columns):
            raise TaskDataError(f"{path}:{number}: expected {len(columns)} tab-separated fields "
                                f"({', '.join(columns)}), got {len(values)}")
        rows.append((Where(path, number), dict(zip(columns, values))))
    if not rows:
        raise TaskDataError(f"{path}: no data rows")
    return columns, rows


def require_columns(path: str, columns, needed) -> None:
    missing = [name for name in needed if name not in columns]
    if missing:
        raise TaskDataError(f"{path}:1: missing column {', '.join(map(repr, missing))}; the header has "
                            f"{', '.join(map(repr, columns))}")


def parse_json(text: str, where: Where):
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise where.error(f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None


def read_json(path: str):
    return parse_json(read_text(path), Where(path))


def read_jsonl(path: str) -> list:
    """[(Where, object)] for every non-blank line, each line one JSON object."""
    records = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        record = parse_json(line, where)
        if not isinstance(record, dict):
            raise where.error(f"expected a JSON object, got {type(record).__name__}")
        records.append((where, record))
    return records


def field(record: dict, name: str, where: Where, kind=str):
    """record[name], checked to exist and to be of `kind` (a type or a tuple of types; bool is no int)."""
    if not isinstance(record, dict):
        raise where.error(f"expected a JSON object, got {type(record).__name__}")
    if name not in record or record[name] is None:
        raise where.error("missing", field=name)
    value = record[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise where.error(f"expected {expected}, got {type(value).__name__} {value!r}", field=name)
    return value


def label_id(value, values: tuple, where: Where, name: str = "label") -> int:
    """Index of a raw label among the task's raw label values (type-strict: True is not 1)."""
    for index, known in enumerate(values):
        if type(known) is type(value) and known == value:
            return index
    raise where.error(f"unknown label {value!r}; expected one of {', '.join(map(repr, values))}", field=name)


def parse_float(value: str, where: Where, name: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise where.error(f"expected a number, got {value!r}", field=name) from None
    if not math.isfinite(number):  # float() accepts "nan" and "inf"; as a target they make the loss NaN
        raise where.error(f"expected a finite number, got {value!r}", field=name)
    return number


def check_texts(where: Where, row: dict, names) -> None:
    """An example whose texts are all empty gives the model nothing to read: an error, never a silent
    `[CLS] [SEP]` training example. One empty side of a pair is kept, as the reference keeps it (GLUE's
    QQP train.tsv has two rows with an empty question2)."""
    texts = [row[name] for name in names if isinstance(row.get(name), str)]
    if texts and not any(text.strip() for text in texts):
        if len(texts) == 1:
            raise where.error("empty text", field=names[0])
        raise where.error(f"fields {', '.join(map(repr, names))}: every text is empty")


def is_saved_dataset(data_dir: str) -> bool:
    """A `datasets.DatasetDict.save_to_disk` directory."""
    return os.path.isfile(os.path.join(data_dir, "dataset_dict.json"))


def read_saved_split(data_dir: str, split: str, needed: tuple, label_names: tuple = None) -> list:
    """[(Where, row)] of one split of a saved `DatasetDict`; its `label` ClassLabel names must equal
    `label_names` when those are given (so every split maps label ids the same way)."""
    import datasets  # only these directories need it, and it is slow to import

    splits = json.loads(read_text(os.path.join(data_dir, "dataset_dict.json"))).get("splits", [])
    if split not in splits:
        raise TaskDataError(f"{data_dir}: missing split {split!r} in the saved dataset; it has "
                            f"{', '.join(splits) or 'none'}")
    location = os.path.join(data_dir, split)
    dataset = datasets.load_from_disk(location)
    missing = [name for name in needed if name not in dataset.column_names]
    if missing:
        raise TaskDataError(f"{location}: missing column {', '.join(map(repr, missing))}; it has "
                            f"{', '.join(map(repr, dataset.column_names))}")
    if label_names is not None:
        feature = dataset.features["label"]
        names = tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        if names != tuple(label_names):
            raise TaskDataError(f"{location}: field 'label': label names {names} differ from the task's "
                                f"{tuple(label_names)}")
    if not len(dataset):
        raise TaskDataError(f"{location}: no rows")
    return [(Where(location, f"row {index}"), row) for index, row in enumerate(dataset)]
