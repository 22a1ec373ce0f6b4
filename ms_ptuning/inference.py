"""A trained head run on new inputs (predictions): op by op on the eager backend, as compiled graphs on the
graph backend. Both take numpy input columns and return the head's outputs as float64 numpy.

`GraphForward` runs the eval-mode forward as GRAPH_MODE graphs of fixed shapes, one compiled per (rows,
width): a batch is padded to `rows` rows with copies of its first row (their outputs dropped), and its tokens
to the next multiple of 32, at most the positions the model embeds, with padding the attention mask hides
(the real tokens' outputs are the unpadded ones up to float32 rounding; outputs per token keep the padded
width, whose extra positions callers never read). A stream of batches thus compiles a few graphs.
"""

import sys

import numpy as np

from .backbones import input_positions
from .backend import torch
from .tasks.tagging import PAD_TO_MULTIPLE_OF
from .training.graph_steps import ModelCall, describe, launch, pad_rows, row_count, to_tensors

PADDED_WITH_ZERO = ("attention_mask", "token_type_ids")


def as_float64(outputs):
    if isinstance(outputs, tuple):
        return tuple(output.asnumpy().astype(np.float64) for output in outputs)
    return outputs.asnumpy().astype(np.float64)


class EagerForward:
    """The model called op by op (PyNative), as the eager backend runs it."""

    def __init__(self, model):
        self.model = model

    def __call__(self, columns: dict):
        _, outputs = self.model(**{name: torch.tensor(values) for name, values in columns.items()})
        return as_float64(outputs)


class GraphForward:
    """The model's eval-mode forward compiled (the model must hold a native backbone); see the module doc."""

    def __init__(self, model, rows: int):
        self.model, self.rows = model, rows
        config = model.backbone.config
        limit = input_positions(config)
        self.max_width = None if limit is None else limit - model.config.num_virtual_tokens
        self.pad_token_id = config.pad_token_id or 0
        self.graphs, self.compiled = {}, set()

    def __call__(self, columns: dict):
        count = row_count(columns)
        inputs = pad_rows(self.padded_width(columns), max(self.rows, count))
        names = tuple(inputs)
        graph = self.graphs.setdefault(names, ModelCall(self.model, names))
        _, outputs = launch(graph, f"prediction graph ({describe(inputs)})", to_tensors(inputs), self.compiled,
                            announce=lambda message: print(message, file=sys.stderr))
        outputs = as_float64(outputs)
        return tuple(output[:count] for output in outputs) if isinstance(outputs, tuple) else outputs[:count]

    def padded_width(self, columns: dict) -> dict:
        """The token columns (…, T) padded on the right to the next multiple of 32 (at most max_width)."""
        width = columns["input_ids"].shape[-1]
        target = -(-width // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
        if self.max_width is not None:
            target = max(width, min(target, self.max_width))
        padded = {}
        for name, values in columns.items():
            extra = [(0, 0)] * (values.ndim - 1) + [(0, target - width)]
            fill = 0 if name in PADDED_WITH_ZERO else self.pad_token_id
            padded[name] = np.pad(values, extra, constant_values=fill)
        return padded
