"""The label set of your own training file: single-label classes, multi-label classes or regression.

Inferred from the training file's label values, as Hugging Face's run_classification infers it from the
column's type: lists → multi-label; numbers with a fraction (JSON floats; csv/tsv values that all parse as
numbers, not all as integers) → regression; otherwise classes (strings, integers or booleans). Class labels
are sorted (numbers numerically, strings by code point), so label ids do not depend on the order of the
file. In csv/tsv every value is text: a column whose values all parse as integers holds the integers
(`1`, not `"1"`), as pandas reads it. Every other split is mapped with the training file's set: a label it
never saw is an error naming its file and line.
"""

import math

from .base import TaskDataError

REGRESSION = "regression"
SINGLE = "single_label_classification"
MULTI = "multi_label_classification"


def parse_number(text: str):
    """int or float of a textual value, or None."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def kind(value) -> str:
    """The JSON kind of a label value: list, bool, int, float, str (or the type's name for anything else)."""
    return "list" if isinstance(value, list) else type(value).__name__


def typed_textual(values: list) -> list:
    """csv/tsv label texts as pandas would type the column: all integers, else all numbers, else strings."""
    numbers = [parse_number(value) for value in values]
    if all(isinstance(number, int) for number in numbers):
        return numbers
    if all(number is not None for number in numbers):
        return [float(number) for number in numbers]
    return values


class LabelSet:
    """`problem_type` and, for classes, `labels` (sorted); `encode` maps one split's raw value to the model's
    label (class id, 0/1 list over the labels, or float)."""

    def __init__(self, problem_type: str, labels=(), source: str = "the training file"):
        self.problem_type, self.labels, self.source = problem_type, tuple(labels), source
        self.ids = {(type(label), label): index for index, label in enumerate(self.labels)}  # True is not 1
        self.value_kind = kind(self.labels[0]) if self.labels else "float"

    @classmethod
    def infer(cls, observed: list, textual: bool, source: str, field: str) -> "LabelSet":
        """From [(Where, raw value)] of a training file; `textual`: the values are csv/tsv strings."""
        if not observed:
            raise TaskDataError(f"{source}: no labelled rows")
        values = [value for _, value in observed]
        values = typed_textual(values) if textual else values
        kinds = [kind(value) for value in values]
        if set(kinds) <= {"int", "float"} and "float" in kinds:
            return cls(REGRESSION, (), source)
        labels = sorted(set(class_items(observed, values, kinds, field)))
        if not labels:
            raise observed[0][0].error("every label list is empty: nothing to learn", field=field)
        if kinds[0] == "list":
            return cls(MULTI, labels, source)
        if len(labels) < 2:
            raise observed[0][0].error(f"every row has the label {labels[0]!r}: a classifier needs at least two "
                                       "labels", field=field)
        return cls(SINGLE, labels, source)

    def encode(self, raw, where, textual: bool, field: str):
        if self.problem_type == REGRESSION:
            return self._number(raw, where, textual, field)
        if self.problem_type == MULTI:
            if not isinstance(raw, list):
                raise where.error(f"expected a list of labels (multi-label), got {kind(raw)} {raw!r}", field=field)
            hot = [0] * len(self.labels)
            for item in raw:
                hot[self._id(item, where, field)] = 1
            return hot
        value = raw
        if textual and self.value_kind in ("int", "float"):
            parsed = parse_number(raw)
            value = raw if parsed is None else parsed
        return self._id(value, where, field)

    def _id(self, value, where, field: str) -> int:
        key = (type(value), value)
        if key not in self.ids:
            shown = ", ".join(map(repr, self.labels[:20])) + (", ..." if len(self.labels) > 20 else "")
            raise where.error(f"label {value!r} does not occur in {self.source}, whose labels are {shown}", field=field)
        return self.ids[key]

    @staticmethod
    def _number(raw, where, textual: bool, field: str) -> float:
        value = parse_number(raw) if textual and isinstance(raw, str) else raw
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise where.error(f"expected a finite number (regression), got {raw!r}", field=field)
        return float(value)


def class_items(observed: list, values: list, kinds: list, field: str) -> list:
    """Every class label of the file (the items of lists for multi-label), checked to be of one kind that can
    be a label (string, integer or boolean) so that they sort; errors name the row that breaks the rule."""
    items, item_kind = [], None
    for (where, raw), value, value_kind in zip(observed, values, kinds):
        if value_kind != kinds[0]:
            raise where.error(f"label {raw!r} is a {value_kind}, but the file's first label is a {kinds[0]}; "
                              "a label column holds one kind of value", field=field)
        for item in value if value_kind == "list" else [value]:
            item_kind = item_kind or kind(item)
            if kind(item) not in ("str", "int", "bool") or kind(item) != item_kind:
                raise where.error(f"label {item!r} ({kind(item)}) cannot be a class label here: labels are strings, "
                                  f"integers or booleans, all of one kind (the first is a {item_kind})", field=field)
            items.append(item)
    return items
