"""Folded encoders: the prefix/prompt is computed once and reused; outputs stay the same, op by op (eager)
and in the compiled eval graphs the graph backend predicts with (a graph compiled after folding)."""

import numpy as np
import pytest
from mindspore import Tensor

from ms_ptuning.backbones import build_backbone
from ms_ptuning.backend import seed_everything, torch
from ms_ptuning.config import PTuningConfig
from ms_ptuning.encoders import fold_encoders
from ms_ptuning.encoders.folding import FoldableEncoder
from ms_ptuning.inference import GraphForward
from ms_ptuning.models import HEADS
from ms_ptuning.native import to_native
from tiny_backbones import tiny_config

ENCODERS = [dict(mode="prefix", prefix_projection=True, prefix_hidden_size=32),
            dict(mode="prompt", prompt_encoder_type="lstm")]


def batches() -> list:
    rng = np.random.default_rng(0)
    return [{"input_ids": rng.integers(3, 100, (b, 9)), "attention_mask": np.ones((b, 9), np.int64)} for b in (2, 5)]


@pytest.mark.parametrize("config", ENCODERS)
def test_folded_outputs_equal_unfolded(config):
    seed_everything(0)
    model = HEADS["sequence_classification"](build_backbone(tiny_config("bert")), PTuningConfig(pre_seq_len=5, **config))
    model.set_train(False)
    inputs = [{name: torch.tensor(values) for name, values in batch.items()} for batch in batches()]
    unfolded = [model(**batch)[1].asnumpy() for batch in inputs]
    assert fold_encoders(model) == 1
    folded = [model(**batch)[1].asnumpy() for batch in inputs]
    for before, after in zip(unfolded, folded):
        assert np.abs(before - after).max() <= 1e-6
    fold_encoders(model, fold=False)
    np.testing.assert_array_equal(model(**inputs[0])[1].asnumpy(), unfolded[0])


@pytest.mark.parametrize("config", ENCODERS)
def test_folded_outputs_equal_unfolded_in_compiled_graphs(config):
    """The graph backend: the eval forward compiled with the encoder computing, then a graph compiled after
    folding (the encoder's output a constant), on the native backbone."""
    seed_everything(0)
    model = HEADS["sequence_classification"](to_native(build_backbone(tiny_config("bert"))),
                                             PTuningConfig(pre_seq_len=5, **config))
    model.set_train(False)
    unfolded = [GraphForward(model, rows=5)(batch) for batch in batches()]
    assert fold_encoders(model) == 1
    folded_forward = GraphForward(model, rows=5)
    folded = [folded_forward(batch) for batch in batches()]
    for before, after in zip(unfolded, folded):
        assert before.shape == after.shape and np.abs(before - after).max() <= 1e-6
    encoder = next(cell for _, cell in model.cells_and_names() if isinstance(cell, FoldableEncoder))
    for parameter in encoder.get_parameters():  # the folded graph no longer reads the encoder's weights
        parameter.set_data(Tensor(parameter.asnumpy() * 2))
    np.testing.assert_array_equal(folded_forward(batches()[0]), folded[0])
