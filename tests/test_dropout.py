"""layers.Dropout: masks a pure function of (seed, step, worker, site, row, column), computed by int32 ops on
the device, op by op, in a GRAPH_MODE Cell and under mindspore.jit alike, so an exact resume replays them; drop
rate p; independent across steps, sites, workers and neighbouring elements; inverted scaling; off in eval mode.
Every test runs twice: with the CPU's kernel (device/cpu_kernels.py, the CPU's choice) and with the composed
int32 hash the devices compute (compiled here), so both are pinned to the same documented bits."""

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning.backend import seed_everything, seed_step
from ms_ptuning.device import cpu_kernels
from ms_ptuning.layers import DROPOUT_KEY, Dropout, SharedMasks, keep_masks, set_dropout_key, site_factors, step_key
from ms_ptuning.device import kernels
from ms_ptuning.training.graph_steps import graph_mode

SHAPE = (4, 8, 32)


@pytest.fixture(autouse=True, params=["cpu kernel", "composed hash"])
def masks_by(request):
    """Dropouts built in the test compute their masks with the CPU's kernel or the devices' composed hash."""
    assert cpu_kernels.available()  # a C++ compiler is part of the CPU set-up: without it the CPU is several times slower
    with kernels.forced(request.param == "composed hash"):
        yield request.param


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
    key = lambda step: Tensor(step_key(3, step))  # noqa: E731
    with graph_mode():
        compiled = graph(key(9), ones).asnumpy()
        next_step = graph(key(10), ones).asnumpy()
        replayed = graph(key(9), ones).asnumpy()  # a resumed run launching the same step again
    assert np.array_equal(compiled, eager) and np.array_equal(replayed, eager)
    assert not np.array_equal(next_step, eager)


def test_a_jit_function_draws_the_eager_masks():
    dropout = Dropout(0.5)
    dropout.set_train(True)
    set_dropout_key(3, 9)
    eager = mask_of(dropout)

    @mindspore.jit
    def keyed(key, x):
        ops.assign(DROPOUT_KEY.value, key)
        return dropout(x)

    set_dropout_key(0, 0)
    assert np.array_equal(keyed(Tensor(step_key(3, 9)), Tensor(np.ones(SHAPE, np.float32))).asnumpy(), eager)


def lowbias32_masks(seed: int, step: int, site: int, rows: int, width: int, p: float, worker: int = 0) -> np.ndarray:
    """The documented hash in numpy's uint32 arithmetic, for `rows` rows of `width` units: True where dropped."""
    words = (width + 1) // 2
    multiplier, offset, worker_offset = (step_key(seed, step, worker).view(np.uint32)
                                         * site_factors((site,), rows * words).asnumpy()[0].view(np.uint32))
    with np.errstate(over="ignore"):
        h = np.arange(rows * words, dtype=np.uint32).reshape(rows, words) * multiplier + offset + worker_offset
        h = (h ^ (h >> np.uint32(16))) * np.uint32(0x7FEB352D)
        h = (h ^ (h >> np.uint32(15))) * np.uint32(0x846CA68B)
        h = h ^ (h >> np.uint32(16))
    high = (h >> np.uint32(16)) ^ np.uint32(0x8000)
    halves = np.stack([h & np.uint32(0xFFFF), high], -1).reshape(rows, 2 * words)[:, :width]
    return halves < min(round(p * 2**16), 2**16 - 1)


def test_masks_are_the_documented_integer_hash_of_row_and_column():
    # pins the function itself: what another device or MindSpore version must reproduce bit for bit
    dropout = Dropout(0.3)
    dropout.set_train(True)
    set_dropout_key(5, 17)
    dropped = mask_of(dropout) == 0
    rows, width = SHAPE[0] * SHAPE[1], SHAPE[2]
    assert np.array_equal(dropped.reshape(rows, width), lowbias32_masks(5, 17, dropout.site, rows, width, 0.3))
    # for an even row length a unit's mask depends on its flat index, not on the shape around it
    wider = dropout(Tensor(np.ones((2, rows * width), np.float32))).asnumpy()
    assert np.array_equal(wider[0] == 0, dropped.ravel())
    # an odd row length: the last word of each row lends only its low half
    odd = dropout(Tensor(np.ones((5, 3, 7), np.float32))).asnumpy() == 0
    assert np.array_equal(odd.reshape(15, 7), lowbias32_masks(5, 17, dropout.site, 15, 7, 0.3))


@pytest.mark.parametrize("shape", [SHAPE, (3, 5, 9)])
def test_workers_draw_the_masks_of_one_process_on_their_rows(shape):
    # worker w's batch holds rows w·B … (w+1)·B − 1 of the global batch (DataParallel.shard)
    dropout = Dropout(0.4)
    dropout.set_train(True)
    set_dropout_key(9, 2)
    whole = dropout(Tensor(np.ones((3 * shape[0],) + shape[1:], np.float32))).asnumpy()
    for worker in range(3):
        set_dropout_key(9, 2, worker=worker)
        part = dropout(Tensor(np.ones(shape, np.float32))).asnumpy()
        assert np.array_equal(part, whole[worker * shape[0]:(worker + 1) * shape[0]])


class KeyedSharedMasks(nn.Cell):
    def __init__(self, shared: SharedMasks, shape: tuple):
        super().__init__()
        self.shared, self.shape = shared, shape

    def construct(self, key):
        ops.assign(DROPOUT_KEY.value, key)
        return self.shared(self.shape, mindspore.float32)


@pytest.mark.parametrize("shape", [SHAPE, (3, 5, 9)])
def test_shared_masks_are_the_masks_each_site_draws_alone(shape):
    # what the native backbones compute for all their layers at once, op by op and compiled
    dropouts = [Dropout(0.3) for _ in range(3)]
    shared = SharedMasks(dropouts)
    for cell in dropouts + [shared]:
        cell.set_train(True)
    set_dropout_key(4, 6, worker=1)
    alone = [dropout(Tensor(np.ones(shape, np.float32))).asnumpy() for dropout in dropouts]
    together = [mask.asnumpy() for mask in shared(shape, mindspore.float32)]
    graph = KeyedSharedMasks(shared, shape)
    graph.set_train(True)
    with graph_mode():
        compiled = [mask.asnumpy() for mask in graph(Tensor(step_key(4, 6, worker=1)))]
    for mine, theirs, compiled_mask in zip(alone, together, compiled):
        assert np.array_equal(mine, theirs) and np.array_equal(mine, compiled_mask)
    assert not np.array_equal(alone[0], alone[1])
    shared.set_train(False)
    assert shared(shape, mindspore.float32) == (None, None, None)
    with pytest.raises(ValueError, match="one dropout probability"):
        SharedMasks([Dropout(0.1), Dropout(0.2)])


DRAWS = 1_000_000


def dropped_units(dropout: Dropout, seed: int, step: int, worker: int = 0) -> np.ndarray:
    set_dropout_key(seed, step, worker)
    dropout.set_train(True)
    return dropout(Tensor(np.ones((1000, DRAWS // 1000), np.float32))).asnumpy().ravel() == 0


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_is_p_within_three_sigma(p):
    rate = dropped_units(Dropout(p), 11, 2).mean()
    assert abs(rate - p) < 3 * np.sqrt(p * (1 - p) / DRAWS), rate


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_of_other_steps_sites_workers_and_neighbours_are_independent(p):
    # P(both dropped) = p² for independent masks; allowed: 4 standard deviations of the estimate over 10⁶ pairs
    # (the cases are fixed, so the test is deterministic; 4σ leaves ~1e-4 chance for a sound hash to fail it)
    first, second = Dropout(p), Dropout(p)
    base = dropped_units(first, 21, 40)
    others = {"next step": dropped_units(first, 21, 41), "other site": dropped_units(second, 21, 40),
              "other worker": dropped_units(first, 21, 40, worker=1), "other seed": dropped_units(first, 22, 40),
              "neighbouring element": np.roll(base, 1), "element one row on": np.roll(base, DRAWS // 1000)}
    tolerance = 4 * np.sqrt(p * p * (1 - p * p) / DRAWS)
    overlaps = {name: float((base & other).mean()) for name, other in others.items()}
    assert all(abs(overlap - p * p) < tolerance for overlap in overlaps.values()), (overlaps, p * p, tolerance)


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


def test_the_cpu_kernel_computes_the_composed_hash_bit_for_bit(masks_by):
    # what the CPU's graphs launch against what Ascend and GPU launch, op by op and compiled, on shapes with odd
    # and one-unit rows, one and many sites, other workers, half precision
    assert Dropout(0.1).cpu_kernel == (masks_by == "cpu kernel") and not Dropout(0.0).cpu_kernel
    cases = [((4, 8, 32), (3,), mindspore.float32, 0), ((3, 5, 9), (1, 4, 7), mindspore.float32, 2),
             ((2, 3, 1, 1), (5, 6), mindspore.float32, 1), ((7,), (2,), mindspore.float16, 0),
             ((2, 12, 16, 21), tuple(range(10, 22)), mindspore.float16, 3)]
    for shape, sites, dtype, worker in cases:
        key = Tensor(step_key(13, 8, worker))
        threshold, scale = round(0.35 * 2**16), 1 / 0.65

        def both(key):
            return (keep_masks(key, sites, shape, threshold, scale, dtype, True),
                    keep_masks(key, sites, shape, threshold, scale, dtype, False))

        for kernel, composed in (both(key), mindspore.jit(both)(key)):
            assert len(kernel) == len(composed) == len(sites)
            for mine, theirs in zip(kernel, composed):
                assert mine.shape == theirs.shape == shape and mine.dtype == theirs.dtype == dtype
                assert np.array_equal(mine.asnumpy(), theirs.asnumpy()), (shape, sites, dtype, worker)
