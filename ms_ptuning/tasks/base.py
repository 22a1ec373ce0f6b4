"""The contract every task follows; the training driver (ms_ptuning/run.py) only talks to this."""

from abc import ABC, abstractmethod

from ..data.dataset import ArrayDataset


class TaskDataError(ValueError):
    """Bad task data; the message names the file, line (when there is one) and field."""


class Task(ABC):
    """One task. Subclasses set the class attributes and implement `load` and `encode`.

    (Plain class attributes, not dataclass fields: a dataclass `__init__` would reset a subclass's
    `name`/`labels` overrides to the base defaults on every instance.)

    - `splits` names every split `load` reads: `train`, `validation` and usually `test` (some tasks have
      more, e.g. mnli `validation_mismatched`, conll2005 `test_wsj` and `test_brown`); the driver checks
      `--eval_splits` against it before training.
    - `load(data_dir, split)` reads raw examples (list of dicts) of one of `splits` from local files. Missing
      files/fields and unknown labels raise TaskDataError naming file:line:field.
    - `labels` (hence `num_labels`) is fixed by the task definition, before any data is read, so the
      model can be built first and every split maps labels to the same ids. (A task whose labels come from
      the user's files must settle them in one documented step before the model is built.)
    - `encode(examples, tokenizer, max_length, **options)` turns examples into an ArrayDataset whose
      columns are exactly the keyword arguments of the task's head (`input_ids`, `attention_mask`,
      `token_type_ids`, `labels`, ...) plus any bookkeeping columns the metric needs (those are dropped
      before the forward pass: list them in `metadata_columns`). Unlabelled splits get no label column.
      Options: `template_id` (WiC/WSC input template), `doc_stride` (SQuAD windows); a task ignores
      options it does not use, so the driver can pass the same ones to every task. The driver passes
      `--max_seq_length` as `max_length`, or the task's `max_seq_length` when the flag is not given: 128
      as the reference's default; 384 for SQuAD and None (the model's maximum, the tokenizer's
      `model_max_length`) for NER/SRL, which the reference cuts there whatever the flag says.
    - `compute_metrics(predictions, dataset)` → dict of floats; `metric_for_best_model` names the key used
      for best-checkpoint selection (higher is better unless `greater_is_better` is False).
    """

    name: str = ""
    head: str = "sequence_classification"
    problem_type: str = "single_label_classification"
    labels: tuple = ()
    splits: tuple = ("train", "validation", "test")
    metric_for_best_model: str = "accuracy"
    greater_is_better: bool = True
    metadata_columns: tuple = ()
    max_seq_length: int | None = 128

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == "regression" else len(self.labels)

    def settings(self) -> dict:
        """What the adapter saves besides the labels so that a prediction reads its input as training did
        (own-data tasks: their column names)."""
        return {}

    @abstractmethod
    def load(self, data_dir: str, split: str) -> list:
        """Raw examples of one split."""

    @abstractmethod
    def encode(self, examples: list, tokenizer, max_length, **options) -> ArrayDataset:
        """Model-ready columns."""

    @abstractmethod
    def compute_metrics(self, predictions, dataset: ArrayDataset) -> dict:
        """Scores of predictions on an encoded split."""
