"""Your own data files, read as a stream: the format comes from the extension, each record from its place.

Formats (`FORMATS`): `.csv` (comma-separated with a header row, "quoted" fields may hold commas and line
breaks), `.tsv` (tab-separated with a header row, no quoting, as GLUE's files), `.jsonl` (one JSON object
a line), `.json` (a JSON array of objects, or JSON lines as Hugging Face's json loader also reads them),
CoNLL column files `.conll` / `.txt` (token classification: a token a line, its tag in the last column, a
blank line between sentences) and a directory written by `datasets`' `save_to_disk`.

`iter_records` yields `(Where, record)` in file order, where a record is a dict of column values, or a
`TaskDataError` for a line that cannot be read (invalid JSON, wrong number of fields, bytes that are not
UTF-8): training stops at it, prediction reports it and goes on. Problems of the whole file (missing,
empty, unknown format, a header without a needed column) raise at once. Only a JSON array is read whole;
every other format is read a line (a record) at a time.
"""

import csv
import json
import os
import re

from .base import TaskDataError
from .files import Where, parse_json, require_columns

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".conll": "conll", ".txt": "conll"}
SAVED = "saved"  # a datasets.save_to_disk directory
TABLES = ("csv", "tsv", "jsonl", "json", SAVED)  # formats with named columns
TEXTUAL = ("csv", "tsv", "conll")  # formats whose values are all strings (a label "1" may mean the number 1)
BETWEEN_ELEMENTS = re.compile(r"[\s,]*")


def file_format(path: str, allowed=TABLES) -> str:
    """The format of `path` by its extension (or `saved` for a save_to_disk directory); refuses others."""
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")):
            raise TaskDataError(f"{path}: a directory, but not one written by datasets' save_to_disk "
                                "(no dataset_dict.json or state.json)")
        kind = SAVED
    elif not os.path.isfile(path):
        raise TaskDataError(f"{path}: file not found")
    else:
        kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind not in allowed:
        extensions = sorted(ext for ext, name in FORMATS.items() if name in allowed)
        saved = ", or a save_to_disk directory" if SAVED in allowed else ""
        raise TaskDataError(f"{path}: unknown data format {os.path.splitext(path)[1] or '(no extension)'!r}; "
                            f"expected {', '.join(extensions)}{saved}")
    return kind


def iter_records(path: str, kind: str, required=(), split: str = "train", conll_columns=("tokens", "tags")):
    """(Where, record or TaskDataError) for every record. `required`: columns a csv/tsv header or a saved
    dataset must have (JSON records are checked one by one); `split` picks a DatasetDict's split;
    `conll_columns` names a CoNLL file's token and tag lists."""
    if kind == SAVED:
        return saved_records(path, split, required)
    if kind == "conll":
        return conll_records(path, *conll_columns)
    if kind == "json" and first_character(path) == "[":
        return json_array_records(path)
    if kind in ("csv", "tsv"):
        return {"csv": csv_records, "tsv": tsv_records}[kind](path, required)
    return jsonl_records(path)


def undecodable(text: str) -> int | None:
    """Column (1-based) of the first byte that was not UTF-8 (read with errors="surrogateescape"), or None."""
    for column, character in enumerate(text, start=1):
        if "\udc80" <= character <= "\udcff":
            return column
    return None


def decode_error(where: Where, text: str, field: str = "") -> TaskDataError | None:
    """The error for a line (or, with `field`, a value) holding bytes that were not UTF-8, else None."""
    column = undecodable(text)
    if column is None:
        return None
    byte = f"byte 0x{ord(text[column - 1]) - 0xdc00:02x}"
    if field:
        return where.error(f"not UTF-8 text ({byte})", field=field)
    return where.error(f"not UTF-8 text ({byte} at column {column})")


def open_text(path: str):
    """Text with a leading BOM dropped; bytes that are not UTF-8 become markers `decode_error` finds per line."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def first_character(path: str) -> str:
    with open_text(path) as handle:
        for line in handle:
            if line.strip():
                return line.lstrip()[0]
    raise TaskDataError(f"{path}: file is empty")


def check_header(path: str, header, required) -> list:
    if not header or not any(name.strip() for name in header):
        raise TaskDataError(f"{path}: file is empty")
    require_columns(path, header, required)
    error = decode_error(Where(path, 1), "".join(header))
    if error:
        raise error
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise TaskDataError(f"{path}:1: column {', '.join(map(repr, duplicates))} appears twice in the header")
    return list(header)


def table_row(where: Where, header: list, values: list, separator: str):
    if len(values) != len(header):
        return where.error(f"expected {len(header)} {separator}-separated fields ({', '.join(header)}), "
                           f"got {len(values)}")
    for name, value in zip(header, values):
        error = decode_error(where, value, field=name)
        if error:
            return error
    return dict(zip(header, values))


def csv_records(path: str, required=()):
    with open_text(path) as handle:
        reader = csv.reader(handle)
        try:
            header = check_header(path, next(reader, None), required)
            line = reader.line_num + 1
            for values in reader:  # a quoted field may span lines: a record starts after the previous one
                where, line = Where(path, line), reader.line_num + 1
                if values:  # csv gives [] for a blank line
                    yield where, table_row(where, header, values, "comma")
        except csv.Error as error:  # e.g. a NUL byte: the reader cannot go on past it
            raise TaskDataError(f"{path}:{reader.line_num}: not readable as csv: {error}") from None


def tsv_records(path: str, required=()):
    with open_text(path) as handle:
        header = check_header(path, handle.readline().rstrip("\r\n").split("\t"), required)
        for number, line in enumerate(handle, start=2):
            line = line.rstrip("\r\n")
            if line.strip():
                where = Where(path, number)
                yield where, table_row(where, header, line.split("\t"), "tab")


def json_object(where: Where, text: str):
    """One line's JSON object, or the error saying why it is not one (its column: the line is the record's)."""
    error = decode_error(where, text)
    if error:
        return error
    try:
        record = json.loads(text)
    except json.JSONDecodeError as problem:
        return where.error(f"invalid JSON: {problem.msg} (column {problem.colno})")
    return record if isinstance(record, dict) else where.error(f"expected a JSON object, got {type(record).__name__}")


def jsonl_records(path: str):
    empty = True
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                empty = False
                where = Where(path, number)
                yield where, json_object(where, line.rstrip("\r\n"))
    if empty:
        raise TaskDataError(f"{path}: file is empty")


def json_array_records(path: str):
    """The objects of a JSON array, each placed at the line it starts on. Read whole: an array cannot be
    split into records before it is parsed."""
    with open_text(path) as handle:
        text = handle.read()
    document = parse_json(text, Where(path))
    if not isinstance(document, list):
        raise Where(path).error(f"expected a JSON array of objects, got {type(document).__name__}")
    decoder, position = json.JSONDecoder(), text.index("[") + 1
    line = 1 + text.count("\n", 0, position)
    for index, _ in enumerate(document):
        start = BETWEEN_ELEMENTS.match(text, position).end()
        line += text.count("\n", position, start)
        value, position = decoder.raw_decode(text, start)
        where = Where(path, line, f"[{index}]")
        yield where, value if isinstance(value, dict) else where.error(
            f"expected a JSON object, got {type(value).__name__}")
        line += text.count("\n", start, position)


def conll_records(path: str, tokens_column: str, tags_column: str):
    """One record per sentence: {tokens_column: [first column], tags_column: [last column] or None when the
    lines have a single column}; -DOCSTART- lines are skipped, as in CoNLL-2003."""
    tokens, tags, start, problem = [], [], None, None
    with open_text(path) as handle:
        for number, line in enumerate(with_final_blank(handle), start=1):
            values = line.split()
            if values and values[0] != "-DOCSTART-":
                start = start or number
                problem = problem or decode_error(Where(path, number), line)
                tokens.append(values[0])
                tags.append(values[-1] if len(values) > 1 else None)
                continue
            if tokens:
                yield Where(path, start), problem or conll_sentence(Where(path, start), tokens, tags,
                                                                    tokens_column, tags_column)
            tokens, tags, start, problem = [], [], None, None


def with_final_blank(handle):
    """The file's lines and one blank line after them, which ends the last sentence."""
    yield from handle
    yield ""


def conll_sentence(where: Where, tokens: list, tags: list, tokens_column: str, tags_column: str):
    tagged = [tag is not None for tag in tags]
    if any(tagged) and not all(tagged):
        return where.error(f"token {tokens[tagged.index(False)]!r} has no tag column while others have one")
    return {tokens_column: tokens, tags_column: tags if all(tagged) else None}


def saved_records(path: str, split: str, required=()):
    """Rows of a save_to_disk Dataset, or of split `split` of a DatasetDict; ClassLabel ids (also inside
    sequences) become their names, -1 (unlabelled) None."""
    import datasets  # slow to import: only save_to_disk directories need it

    dataset = datasets.load_from_disk(path)
    location = path
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise TaskDataError(f"{path}: the saved DatasetDict has no split {split!r}; it has "
                                f"{', '.join(dataset) or 'none'}")
        dataset, location = dataset[split], os.path.join(path, split)
    missing = [name for name in required if name not in dataset.column_names]
    if missing:
        raise TaskDataError(f"{location}: missing column {', '.join(map(repr, missing))}; it has "
                            f"{', '.join(map(repr, dataset.column_names))}")
    if not len(dataset):
        raise TaskDataError(f"{location}: no rows")
    names = {column: class_names(feature) for column, feature in dataset.features.items()}
    for index, row in enumerate(dataset):
        yield Where(location, f"row {index}"), {column: named(value, names[column]) for column, value in row.items()}


def class_names(feature):
    """The names of a ClassLabel feature or of a sequence of them, else None."""
    if isinstance(feature, list):  # a plain list feature: [ClassLabel]
        feature = feature[0] if feature else None
    inner = getattr(feature, "feature", feature)  # datasets.Sequence(ClassLabel) holds its ClassLabel here
    return getattr(inner, "names", None)


def named(value, names):
    if names is None:
        return value
    if isinstance(value, list):
        return [named(item, names) for item in value]
    return None if value is None or value < 0 else names[value]
