"""Token classification (NER, SRL): words with one BIO tag each → sub-token columns for the
token_classification head, scored entity-level with seqeval."""

import numpy as np

from ..data.dataset import ArrayDataset
from .base import Task, TaskDataError
from .classification import dataset_labels, first_output
from .encoding import check_not_empty, effective_max_length, model_inputs
from .seqeval import entity_scores, tag_sequences

IGNORED = -100  # label of sub-tokens that are not the first of a word, and of special/padding tokens


def bio_labels(entity_types) -> tuple:
    """("O", "B-T1", "I-T1", "B-T2", ...)."""
    return ("O",) + tuple(f"{prefix}-{kind}" for kind in entity_types for prefix in "BI")


class TaggingTask(Task):
    """Examples are {"words": [str], "tags": [label id] or None, ...}."""

    head = "token_classification"
    metric_for_best_model = "f1"

    def input_words(self, example: dict, tokenizer) -> list:
        """The words the tokenizer gets; only the first len(tags) of them carry labels."""
        return example["words"]

    def encode(self, examples, tokenizer, max_length, **options) -> ArrayDataset:
        check_not_empty(examples, self.name)
        if not tokenizer.is_fast:
            raise TaskDataError(f"task {self.name!r} aligns labels with a fast tokenizer's word_ids; "
                                f"{type(tokenizer).__name__} is not one")
        encoded = tokenizer([self.input_words(example, tokenizer) for example in examples],
                            is_split_into_words=True, truncation=True, padding="max_length",
                            max_length=effective_max_length(tokenizer, max_length))
        columns = model_inputs(encoded)
        if all(example["tags"] is not None for example in examples):
            columns["labels"] = np.stack([self._aligned_labels(encoded.word_ids(i), example["tags"])
                                          for i, example in enumerate(examples)])
        return ArrayDataset(columns)

    @staticmethod
    def _aligned_labels(word_ids: list, tags: list) -> np.ndarray:
        """(T,) the word's tag on its first sub-token, IGNORED elsewhere (as the reference aligns them)."""
        labels = np.full(len(word_ids), IGNORED, dtype=np.int64)
        previous = None
        for position, word in enumerate(word_ids):
            if word is not None and word != previous and word < len(tags):
                labels[position] = tags[word]
            previous = word
        return labels

    def compute_metrics(self, predictions, dataset) -> dict:
        logits = np.asarray(first_output(predictions))  # (N, T, num_labels)
        true, predicted = tag_sequences(logits.argmax(axis=-1), dataset_labels(dataset, self.name), self.labels)
        return entity_scores(true, predicted)
