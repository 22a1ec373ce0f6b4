"""The two metric contracts of the Trainer, and HF's metric-name rule.

- `compute_metrics(EvalPrediction)`: Hugging Face's contract. `predictions` are the model outputs (a tuple
  for multi-output heads), `label_ids` the label columns (`label_names`), `inputs` the input_ids when
  `include_for_metrics` asks for them.
- `DatasetMetrics(fn)`: ms_ptuning's tasks score with `fn(predictions, dataset)`, because some metrics need
  columns the model never sees (SQuAD's post-processing reads each feature's example id, offsets and the
  context; ReCoRD its candidate entities). Wrap such a function in `DatasetMetrics` and the Trainer passes
  it the evaluated dataset, metadata columns included.

Outputs of different sequence widths (per-batch padding) are padded with -100 before they are concatenated
(`data.dataset.concatenate_rows`), as HF's `nested_concat` does: to the dataset's `sequence_width` when it
has one (the stored columns' width), else to the widest batch. Metrics must ignore -100 positions.
"""

class DatasetMetrics:
    """Marks a metric function that takes (predictions, dataset) instead of an EvalPrediction."""

    def __init__(self, function):
        self.function = function

    def __call__(self, predictions, dataset) -> dict:
        return self.function(predictions, dataset)


def prefixed(metrics: dict, prefix: str) -> dict:
    """HF's key rule: every metric gets `<prefix>_` unless it already has it."""
    return {(name if name.startswith(f"{prefix}_") else f"{prefix}_{name}"): value for name, value in metrics.items()}
