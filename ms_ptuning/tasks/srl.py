"""Semantic role labelling (CoNLL-2005, CoNLL-2012) in the reference's one-line-per-predicate format:

    <predicate word index> w1 w2 ... wn ||| t1 t2 ... tn

The predicate is marked as the reference marks it: the sentence's words, the literal word "[SEP]", then
the predicate word again (for BERT "[SEP]" is its separator token; RoBERTa reads the five characters as
text); only the sentence's words carry tags. The tag inventories are fixed by the task, as the reference's
dataset scripts fix them (106 CoNLL-2005 tags, 116 CoNLL-2012 tags; "O" first, then sorted), so
`num_labels` is known before any data is read; a tag outside the inventory is an error naming file:line.
"""

from .base import TaskDataError
from .files import Where, read_lines, split_path
from .registry import register
from .tagging import TaggingTask

SEPARATOR = "|||"
PREDICATE_MARK = "[SEP]"  # the literal word the reference puts between the sentence and its predicate


def srl_labels(roles: list, begin_only: tuple = ()) -> tuple:
    """"O", then B-<role> for every role and I-<role> for those that ever span several words, sorted."""
    tags = [f"B-{role}" for role in roles] + [f"I-{role}" for role in roles if role not in begin_only]
    return ("O",) + tuple(sorted(tags))


def role_set(core: str, modifier: str, modifiers: str, continued: str, referring: str) -> list:
    """Core arguments, V, <modifier>-<type> adjuncts, then the C- (continuation) and R- (reference) roles."""
    return (core.split() + ["V"] + [f"{modifier}-{kind}" for kind in modifiers.split()]
            + [f"C-{role}" for role in continued.split()] + [f"R-{role}" for role in referring.split()])


CONLL05_LABELS = srl_labels(role_set(
    "A0 A1 A2 A3 A4 A5 AA AM", "AM", "ADV CAU DIR DIS EXT LOC MNR MOD NEG PNC PRD REC TM TMP",
    "A0 A1 A2 A3 A4 A5 V AM-ADV AM-CAU AM-DIR AM-DIS AM-EXT AM-LOC AM-MNR AM-NEG AM-PNC AM-TMP",
    "A0 A1 A2 A3 A4 AA AM-ADV AM-CAU AM-DIR AM-EXT AM-LOC AM-MNR AM-PNC AM-TMP"),
    begin_only=("C-AM-NEG", "R-AA", "R-AM-CAU"))
CONLL12_LABELS = srl_labels(role_set(
    "ARG0 ARG1 ARG2 ARG3 ARG4 ARG5 ARGA", "ARGM",
    "ADJ ADV CAU COM DIR DIS DSP EXT GOL LOC LVB MNR MOD NEG PNC PRD PRP PRR PRX REC TMP",
    "ARG0 ARG1 ARG2 ARG3 ARG4 ARGM-ADV ARGM-CAU ARGM-DSP ARGM-EXT ARGM-LOC ARGM-MNR ARGM-MOD ARGM-PRP ARGM-TMP",
    "ARG0 ARG1 ARG2 ARG3 ARG4 ARG5 ARGM-ADV ARGM-CAU ARGM-COM ARGM-DIR ARGM-EXT ARGM-GOL ARGM-LOC ARGM-MNR "
    "ARGM-PRD ARGM-PRP ARGM-TMP"),
    begin_only=("ARGM-LVB", "ARGM-PRR", "ARGM-PRX", "R-ARG5", "V"))


def read_srl(path: str, label_ids: dict) -> list:
    """[{"words", "tags" (ids), "predicate"}] of one file; tags must be keys of `label_ids`."""
    examples = []
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
        unknown = [tag for tag in tags if tag not in label_ids]
        if unknown:
            raise where.error(f"unknown tag {unknown[0]!r}: not one of the task's {len(label_ids)} tags "
                              "(O, B-<role>, I-<role>)", field="tags")
        examples.append({"words": words, "tags": [label_ids[tag] for tag in tags], "predicate": predicate})
    if not examples:
        raise TaskDataError(f"{path}: no sentences")
    return examples


class SrlTask(TaggingTask):
    def load(self, data_dir, split):
        path = split_path(data_dir, split, self.split_files, self.name)
        return read_srl(path, {tag: index for index, tag in enumerate(self.labels)})

    def input_words(self, example):
        return example["words"] + [PREDICATE_MARK, example["words"][example["predicate"]]]


class Conll2005(SrlTask):
    name = "conll2005"
    labels = CONLL05_LABELS
    split_files = {"train": "conll05.train.txt", "validation": "conll05.devel.txt",
                   "test_wsj": "conll05.test.wsj.txt", "test_brown": "conll05.test.brown.txt"}
    splits = ("train", "validation", "test_wsj", "test_brown")


class Conll2012(SrlTask):
    name = "conll2012"
    labels = CONLL12_LABELS
    split_files = {"train": "conll2012.train.txt", "validation": "conll2012.devel.txt",
                   "test": "conll2012.test.txt"}
    splits = ("train", "validation", "test")


register(Conll2005, Conll2012)
