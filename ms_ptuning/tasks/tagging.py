"""Token classification (NER, SRL): words with one BIO tag each → sub-token columns for the
token_classification head, scored entity-level with seqeval.

Encoded as the reference encodes them (THUDM/P-tuning-v2 tasks/ner, tasks/srl): cut only at the model's
maximum unless a max length is given (`max_seq_length = None`: the reference tokenizes with
`truncation=True` and no max_length, ignoring --max_seq_length), padded per batch (its padding collator)
to a multiple of 32, the first sub-token of each word labelled and every other position -100.
"""

import numpy as np

from ..data.dataset import ArrayDataset
from .base import Task, TaskDataError
from .classification import dataset_labels, first_output
from .encoding import check_not_empty, effective_max_length, model_inputs
from .seqeval import entity_scores, tag_sequences

IGNORED = -100  # label of sub-tokens that are not the first of a word, and of special/padding tokens
PAD_TO_MULTIPLE_OF = 32  # batch widths 32, 64, ...: few shapes to compile, little padding


def bio_labels(entity_types) -> tuple:
    """("O", "B-T1", "I-T1", "B-T2", ...)."""
    return ("O",) + tuple(f"{prefix}-{kind}" for kind in entity_types for prefix in "BI")


class TaggingTask(Task):
    """Examples are {"words": [str], "tags": [label id] or None, ...}."""

    head = "token_classification"
    metric_for_best_model = "f1"
    max_seq_length = None

    def input_words(self, example: dict) -> list:
        """The words the tokenizer gets; only the first len(tags) of them carry labels."""
        return example["words"]

    def encode(self, examples, tokenizer, max_length, **options) -> ArrayDataset:
        check_not_empty(examples, self.name)
        if not tokenizer.is_fast:
            raise TaskDataError(f"task {self.name!r} aligns labels with a fast tokenizer's word_ids; "
                                f"{type(tokenizer).__name__} is not one")
        # no max_length: truncation=True cuts at the tokenizer's model_max_length, as in the reference
        cut = {} if max_length is None else {"max_length": effective_max_length(tokenizer, max_length)}
        encoded = tokenizer([self.input_words(example) for example in examples], is_split_into_words=True,
                            truncation=True, padding="longest", padding_side="right", **cut)
        columns = model_inputs(encoded)
        if all(example["tags"] is not None for example in examples):
            columns["labels"] = np.stack([self._aligned_labels(encoded.word_ids(i), example["tags"])
                                          for i, example in enumerate(examples)])
        return ArrayDataset(columns, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)

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
        logits = np.asarray(first_output(predictions))  # (N, W, num_labels), -100 past each batch's width
        labels = labels_of_width(dataset_labels(dataset, self.name), logits.shape[1])
        true, predicted = tag_sequences(logits.argmax(axis=-1), labels, self.labels)
        return entity_scores(true, predicted)


def labels_of_width(labels: np.ndarray, width: int) -> np.ndarray:
    """(N, T) labels cut or padded (with IGNORED) to the predictions' width W; a labelled position beyond
    W would have no prediction, so it raises."""
    if width >= labels.shape[1]:
        return np.pad(labels, [(0, 0), (0, width - labels.shape[1])], constant_values=IGNORED)
    if np.any(labels[:, width:] != IGNORED):
        raise ValueError(f"predictions of width {width} miss labelled positions of width {labels.shape[1]}")
    return labels[:, :width]
