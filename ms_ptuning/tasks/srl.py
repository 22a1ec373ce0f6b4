"""Semantic role labelling (CoNLL-2005, CoNLL-2012) in the reference's one-line-per-predicate format:

    <predicate word index> w1 w2 ... wn ||| t1 t2 ... tn

The predicate is marked as the reference does: the sentence, the tokenizer's separator token, then the
predicate word again ([CLS] words [SEP] predicate [SEP] for BERT); only the sentence's words carry tags.
The label set is the union of the tags in the data directory's split files ("O" first, then sorted), so
every split maps tags to the same ids.
"""

import os

from .base import TaskDataError
from .files import Where, check_data_dir, read_lines, split_path
from .registry import register
from .seqeval import split_tag
from .tagging import TaggingTask

SEPARATOR = "|||"


def read_srl(path: str) -> list:
    """[(Where, predicate index, words, tags)] of one file."""
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        where = Where(path, number)
        if line.count(SEPARATOR) != 1:
            raise where.error(f"expected one {SEPARATOR!r} between the words and the tags")
        left, right = line.split(SEPARATOR)
        values, tags = left.split(), right.split()
        if not values or not values[0].isdigit():
            raise where.error(f"expected the predicate's word index first, got {values[:1]}", field="index")
        predicate, words = int(values[0]), values[1:]
        if len(words) != len(tags):
            raise where.error(f"{len(words)} words but {len(tags)} tags", field="tags")
        if not words:
            raise where.error("no words", field="tokens")
        if predicate >= len(words):
            raise where.error(f"predicate index {predicate} outside the {len(words)} words", field="index")
        for tag in tags:
            try:
                split_tag(tag)
            except ValueError as error:
                raise where.error(str(error), field="tags") from None
        rows.append((where, predicate, words, tags))
    if not rows:
        raise TaskDataError(f"{path}: no sentences")
    return rows


class SrlTask(TaggingTask):
    def __init__(self):
        self.labels = ()  # set by `load` from the data directory
        self._labels_dir = None

    def load(self, data_dir, split):
        path = split_path(data_dir, split, self.split_files, self.name)
        if self._labels_dir != data_dir:
            self.labels = self._label_set(data_dir)
            self._labels_dir = data_dir
        ids = {tag: index for index, tag in enumerate(self.labels)}
        return [{"words": words, "tags": [ids[tag] for tag in tags], "predicate": predicate}
                for _, predicate, words, tags in read_srl(path)]

    def _label_set(self, data_dir) -> tuple:
        check_data_dir(data_dir)
        tags = set()
        for name in self.split_files.values():
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                tags.update(tag for *_, row_tags in read_srl(path) for tag in row_tags)
        return ("O",) + tuple(sorted(tags - {"O"}))

    def input_words(self, example, tokenizer):
        return example["words"] + [tokenizer.sep_token, example["words"][example["predicate"]]]


class Conll2005(SrlTask):
    name = "conll2005"
    split_files = {"train": "conll05.train.txt", "validation": "conll05.devel.txt",
                   "test": "conll05.test.wsj.txt", "test_brown": "conll05.test.brown.txt"}
    splits = ("train", "validation", "test", "test_brown")  # test = the WSJ test set


class Conll2012(SrlTask):
    name = "conll2012"
    split_files = {"train": "conll2012.train.txt", "validation": "conll2012.devel.txt",
                   "test": "conll2012.test.txt"}
    splits = ("train", "validation", "test")


register(Conll2005, Conll2012)
