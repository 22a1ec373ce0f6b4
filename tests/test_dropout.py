"""layers.Dropout: masks a pure function of (seed, step, worker, site), op by op and in a compiled graph alike,
so an exact resume replays them; inverted scaling; off in eval mode."""

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning.backend import seed_everything, seed_step
from ms_ptuning.layers import DROPOUT_KEY, Dropout, set_dropout_key
from ms_ptuning.training.graph_steps import graph_mode

SHAPE = (4, 8, 32)


def mask_of(dropout: Dropout, dtype=np.float32) -> np.ndarray:
    dropout.set_train(True)
    return dropout(Tensor(np.ones(SHAPE, dtype))).asnumpy()


class KeyedDropout(nn.Cell):
    """What a compiled train step does: assign the key from a graph input, then run the dropout."""

    def __init__(self, dropout: Dropout):
        super().__init__()
        self.dropout = dropout

    def construct(self, key, x):
        ops.assign(DROPOUT_KEY.value, key)
        return self.dropout(x)


def test_masks_depend_on_seed_step_worker_and_site_only():
    first, second = Dropout(0.25), Dropout(0.25)
    set_dropout_key(7, 3)
    mask = mask_of(first)
    assert np.array_equal(mask, mask_of(first))  # no hidden state advances between calls
    set_dropout_key(7, 4)
    other_step = mask_of(first)
    set_dropout_key(7, 3, worker=1)
    other_worker = mask_of(first)
    set_dropout_key(8, 3)
    other_seed = mask_of(first)
    seed_step(7, 3)  # the eager engine's per-step call keys layers.Dropout too
    assert np.array_equal(mask_of(first), mask)
    other_site = mask_of(second)
    for other in (other_step, other_worker, other_seed, other_site):
        assert not np.array_equal(mask, other)
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert 0.2 < (mask == 0).mean() < 0.3


def test_a_compiled_graph_draws_the_eager_masks_and_replays_them():
    dropout = Dropout(0.5)
    set_dropout_key(3, 9)
    eager = mask_of(dropout)
    graph = KeyedDropout(dropout)
    graph.set_train(True)
    ones = Tensor(np.ones(SHAPE, np.float32))
    key = lambda step: Tensor(np.array([3, step, 0], np.int64))  # noqa: E731
    with graph_mode():
        compiled = graph(key(9), ones).asnumpy()
        next_step = graph(key(10), ones).asnumpy()
        replayed = graph(key(9), ones).asnumpy()  # a resumed run launching the same step again
    assert np.array_equal(compiled, eager) and np.array_equal(replayed, eager)
    assert not np.array_equal(next_step, eager)


def test_models_built_after_the_same_seeding_get_the_same_sites():
    seed_everything(0)
    first = [Dropout(0.1), Dropout(0.1)]
    seed_everything(0)
    again = [Dropout(0.1), Dropout(0.1)]
    assert [d.site for d in first] == [d.site for d in again] and first[0].site != first[1].site


def test_eval_mode_and_zero_probability_pass_the_input_through():
    x = Tensor(np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))
    dropout = Dropout(0.5)
    dropout.set_train(False)
    assert np.array_equal(dropout(x).asnumpy(), x.asnumpy())
    assert np.array_equal(mask_of(Dropout(0.0)), np.ones(SHAPE, np.float32))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)


def test_half_precision_inputs_get_half_precision_masks():
    set_dropout_key(1, 1)
    mask = mask_of(Dropout(0.1), np.float16)
    assert mask.dtype == np.float16 and set(np.unique(mask)) == {0.0, np.float16(1 / 0.9)}


def test_gradients_flow_through_the_kept_units_only():
    dropout = Dropout(0.5)
    dropout.set_train(True)
    set_dropout_key(2, 5)
    x = Tensor(np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32))
    grad = mindspore.grad(lambda value: ops.reduce_sum(dropout(value)))(x).asnumpy()
    np.testing.assert_array_equal(grad, mask_of(dropout))
