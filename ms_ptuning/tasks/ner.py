"""Named-entity recognition from CoNLL column files: one token per line, a blank line (or -DOCSTART-)
between sentences, the entity tag in the last column. File names and columns as the reference reads them."""

from .base import TaskDataError
from .files import Where, label_id, read_lines, split_path
from .registry import register
from .tagging import TaggingTask, bio_labels


class ConllNerTask(TaggingTask):
    separator = None  # None: any run of spaces; "\t" for tab-separated files
    token_column = 0
    column_count = None  # the exact number of columns, when the format fixes it
    min_columns = 2
    column_names = "token ... tag"

    def load(self, data_dir, split):
        path = split_path(data_dir, split, self.split_files, self.name)
        examples, words, tags = [], [], []
        for number, line in enumerate(read_lines(path) + [""], start=1):
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    examples.append({"words": words, "tags": tags})
                words, tags = [], []
                continue
            values = line.split(self.separator)
            if len(values) < self.min_columns or self.column_count not in (None, len(values)):
                expected = self.column_count or f"at least {self.min_columns}"
                raise TaskDataError(f"{path}:{number}: expected {expected} columns ({self.column_names}), "
                                    f"got {len(values)}: {line!r}")
            words.append(values[self.token_column])
            tags.append(label_id(values[-1], self.labels, Where(path, number), "ner_tag"))
        if not examples:
            raise TaskDataError(f"{path}: no sentences")
        return examples


class Conll2003(ConllNerTask):
    """`token POS chunk NER`, space-separated."""

    name = "conll2003"
    labels = bio_labels(("PER", "ORG", "LOC", "MISC"))
    split_files = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
    splits = ("train", "validation", "test")
    column_count = 4
    column_names = "token POS chunk NER"


class Conll2004(ConllNerTask):
    """`token ... tag`, space-separated."""

    name = "conll2004"
    labels = bio_labels(("Loc", "Peop", "Org", "Other"))
    split_files = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}
    splits = ("train", "validation", "test")


class OntoNotes(ConllNerTask):
    """CoNLL-X rows (`id form lemma ...`) with the NER tag last, tab-separated."""

    name = "ontonotes"
    labels = bio_labels(("CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP",
                         "ORDINAL", "ORG", "PERCENT", "PERSON", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART"))
    split_files = {"train": "train.sd.conllx", "validation": "dev.sd.conllx", "test": "test.sd.conllx"}
    splits = ("train", "validation", "test")
    separator = "\t"
    token_column = 1
    min_columns = 3
    column_names = "id token ... tag"


register(Conll2003, Conll2004, OntoNotes)
