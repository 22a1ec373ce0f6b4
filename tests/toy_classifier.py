"""A small pure-MindSpore sequence classifier and its data, for the compiled step engine's tests
(test_graph_steps.py and the msrun workers of graph_steps_worker.py)."""

import mindspore
import numpy as np
from mindspore import nn, ops

from ms_ptuning.backend import seed_everything
from ms_ptuning.layers import Dropout, Embedding, LayerNorm, Linear
from ms_ptuning.losses import sequence_classification_loss
from ms_ptuning.training import TrainingArguments

VOCAB, HIDDEN, LENGTH, PREFIX = 40, 16, 6, 3


class ToyClassifier(nn.Cell):
    """Frozen word embeddings (a stand-in backbone), a trainable prefix table added to their masked mean,
    dense + tanh, LayerNorm (no weight decay), dropout and a linear head with a Hugging Face loss."""

    def __init__(self, num_labels: int, problem_type: str, dropout: float):
        super().__init__()
        self.problem_type = problem_type
        self.word_embeddings = Embedding(VOCAB, HIDDEN, std=0.5)
        self.word_embeddings.weight.requires_grad = False
        self.prefix = Embedding(PREFIX, HIDDEN, std=0.3)
        self.dense = Linear(HIDDEN, HIDDEN)
        self.LayerNorm = LayerNorm(HIDDEN)
        self.dropout = Dropout(dropout)
        self.classifier = Linear(HIDDEN, num_labels)

    def construct(self, input_ids, attention_mask, labels=None):
        mask = ops.expand_dims(ops.cast(attention_mask, mindspore.float32), -1)
        words = ops.div(ops.reduce_sum(ops.mul(self.word_embeddings(input_ids), mask), 1), ops.reduce_sum(mask, 1))
        hidden = ops.tanh(self.dense(ops.add(words, ops.reduce_mean(self.prefix.weight, 0))))
        logits = self.classifier(self.dropout(self.LayerNorm(hidden)))
        if labels is None:
            return None, logits
        return sequence_classification_loss(logits, labels, self.problem_type), logits


def toy(problem_type: str = "single_label_classification", dropout: float = 0.0) -> ToyClassifier:
    seed_everything(0)  # the same initial weights and dropout sites every time
    return ToyClassifier(1 if problem_type == "regression" else 3, problem_type, dropout)


def arguments(tmp_path, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(tmp_path), learning_rate=5e-2, per_device_train_batch_size=4,
                  per_device_eval_batch_size=4, gradient_accumulation_steps=1, max_grad_norm=1.0, weight_decay=0.1,
                  report_to=[], seed=3)
    return TrainingArguments(**{**values, **overrides})


def rows(count: int, seed: int, regression: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    padding = rng.integers(0, 3, count)  # 0-2 padding tokens per row
    mask = (np.arange(LENGTH)[None] < LENGTH - padding[:, None]).astype(np.int64)
    labels = rng.normal(100.0, 5.0, count).astype(np.float32) if regression else rng.integers(0, 3, count)
    return {"input_ids": rng.integers(0, VOCAB, (count, LENGTH)).astype(np.int64), "attention_mask": mask,
            "labels": labels}


def micro_batch_stream(size: int = 22, batch: int = 4):
    """Endless epochs over `size` rows in batches of `batch`: every epoch ends with a short batch."""
    data = rows(size, seed=1)
    for epoch in range(1000):
        order = np.random.default_rng(epoch).permutation(size)
        for start in range(0, size, batch):
            yield {name: values[order[start:start + batch]] for name, values in data.items()}
