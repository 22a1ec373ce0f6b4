"""GLUE from the original tsv files (train.tsv / dev.tsv / test.tsv) or from a Hugging Face
`DatasetDict.save_to_disk` directory of the `glue` dataset; labels and text fields as in the HF dataset."""

from .. import metrics
from .classification import TextClassificationTask
from .files import (check_split, check_texts, is_saved_dataset, label_id, parse_float, read_saved_split,
                    read_tsv, require_columns, split_path)
from .registry import register

NOT_LABELLED = -1  # the label HF's glue dataset gives test rows


class GlueTask(TextClassificationTask):
    text_fields = ("sentence1", "sentence2")  # HF field names; second None for single sentences
    tsv_text_columns = ("sentence1", "sentence2")  # the same texts' columns in the GLUE tsv files
    tsv_label_column = "label"
    tsv_label_values = ("0", "1")  # raw tsv labels in label-id order (unused for regression)
    headerless_columns = ()
    split_files = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
    splits = ("train", "validation", "test")
    saved_splits = {"train": "train", "validation": "validation", "test": "test"}

    def texts(self, example, template_id):
        return example["text_a"], example["text_b"]

    def load(self, data_dir, split):
        if is_saved_dataset(data_dir):
            return self._load_saved(data_dir, split)
        path = split_path(data_dir, split, self.split_files, self.name,
                          hint=" (GLUE tsv) or a datasets.save_to_disk directory (dataset_dict.json)")
        columns, rows = read_tsv(path, self.headerless_columns)
        texts = [column for column in self.tsv_text_columns if column]
        require_columns(path, columns, texts if split == "test" else texts + [self.tsv_label_column])
        labelled = self.tsv_label_column in columns
        examples = []
        for where, row in rows:
            check_texts(where, row, texts)
            examples.append(self._example([row[column] if column else None for column in self.tsv_text_columns],
                                          self._tsv_label(row[self.tsv_label_column], where) if labelled else None))
        return examples

    def _tsv_label(self, raw, where):
        if self.problem_type == "regression":
            return parse_float(raw, where, self.tsv_label_column)
        return label_id(raw, self.tsv_label_values, where, self.tsv_label_column)

    def _load_saved(self, data_dir, split):
        check_split(split, self.saved_splits, self.name)
        texts = tuple(name for name in self.text_fields if name)
        classes = None if self.problem_type == "regression" else self.labels
        examples = []
        for where, row in read_saved_split(data_dir, self.saved_splits[split], texts + ("label",), classes):
            check_texts(where, row, texts)
            label = row["label"]
            if label == NOT_LABELLED:
                if split != "test":
                    raise where.error(f"unlabelled row ({NOT_LABELLED}) in the {split} split", field="label")
                label = None
            examples.append(self._example([row[name] if name else None for name in self.text_fields], label))
        return examples

    @staticmethod
    def _example(texts, label):
        return {"text_a": texts[0], "text_b": texts[1], "label": label}


class Cola(GlueTask):
    name = "cola"
    labels = ("unacceptable", "acceptable")
    text_fields = ("sentence", None)
    tsv_text_columns = ("sentence", None)
    headerless_columns = ("source", "label", "original_label", "sentence")
    scorers = {"matthews_correlation": metrics.matthews_corrcoef}
    metric_for_best_model = "matthews_correlation"


class Sst2(GlueTask):
    name = "sst2"
    labels = ("negative", "positive")
    text_fields = ("sentence", None)
    tsv_text_columns = ("sentence", None)


class Mrpc(GlueTask):
    name = "mrpc"
    labels = ("not_equivalent", "equivalent")
    tsv_text_columns = ("#1 String", "#2 String")
    tsv_label_column = "Quality"
    scorers = {"accuracy": metrics.accuracy, "f1": metrics.f1_binary}


class Qqp(GlueTask):
    name = "qqp"
    labels = ("not_duplicate", "duplicate")
    text_fields = ("question1", "question2")
    tsv_text_columns = ("question1", "question2")
    tsv_label_column = "is_duplicate"
    scorers = {"accuracy": metrics.accuracy, "f1": metrics.f1_binary}


class Stsb(GlueTask):
    name = "stsb"
    problem_type = "regression"
    tsv_label_column = "score"
    scorers = {"pearson": metrics.pearson, "spearmanr": metrics.spearman}
    metric_for_best_model = "pearson"


class Mnli(GlueTask):
    name = "mnli"
    labels = ("entailment", "neutral", "contradiction")
    text_fields = ("premise", "hypothesis")
    tsv_label_column = "gold_label"
    tsv_label_values = labels
    split_files = {"train": "train.tsv", "validation": "dev_matched.tsv", "test": "test_matched.tsv",
                   "validation_mismatched": "dev_mismatched.tsv", "test_mismatched": "test_mismatched.tsv"}
    splits = ("train", "validation", "test", "validation_mismatched", "test_mismatched")
    saved_splits = {"train": "train", "validation": "validation_matched", "test": "test_matched",
                    "validation_mismatched": "validation_mismatched", "test_mismatched": "test_mismatched"}


class Qnli(GlueTask):
    name = "qnli"
    labels = ("entailment", "not_entailment")
    text_fields = ("question", "sentence")
    tsv_text_columns = ("question", "sentence")
    tsv_label_values = labels


class GlueRte(GlueTask):
    """GLUE's RTE (tsv); the name `rte` is SuperGLUE's RTE (jsonl), the one the reference's scripts run."""

    name = "glue_rte"
    labels = ("entailment", "not_entailment")
    tsv_label_values = labels


class Wnli(GlueTask):
    name = "wnli"
    labels = ("not_entailment", "entailment")


register(Cola, Sst2, Mrpc, Qqp, Stsb, Mnli, Qnli, GlueRte, Wnli)
