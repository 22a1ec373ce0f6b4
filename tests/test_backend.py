"""Each workaround in ms_ptuning/backend.py, shown necessary-and-sufficient on the behaviour it fixes."""

import mindspore
import numpy as np
from mindspore import Tensor, ops

from ms_ptuning.backend import seed_step, to_mindtorch, torch

F = torch.nn.functional


def test_tensors_from_mindspore_ops_work_with_mindtorch_operators():
    made_by_mindspore = ops.matmul(Tensor(np.ones((2, 3), np.float32)), Tensor(np.ones((3, 4), np.float32)))
    assert not hasattr(made_by_mindspore, "_device") or made_by_mindspore._device is None
    summed = made_by_mindspore + torch.ones(2, 4)  # routed through mindtorch, which reads .device
    np.testing.assert_array_equal(summed.asnumpy(), np.full((2, 4), 4.0, np.float32))


def test_bridge_tags_the_device_of_a_reference_tensor():
    anchor = torch.zeros(1)
    bridged = to_mindtorch(ops.ones((2,), mindspore.float32), like=anchor)
    assert bridged.device == anchor.device


def dropout_masks():
    return (F.dropout(torch.ones(4, 16), 0.5, True).asnumpy(),
            ops.dropout(Tensor(np.ones((4, 16), np.float32)), p=0.5).asnumpy())


def test_dropout_masks_depend_only_on_seed_and_step():
    seed_step(7, 3)
    first = dropout_masks()
    seed_step(7, 4)
    other_step = dropout_masks()
    seed_step(7, 3)
    replay = dropout_masks()
    for a, b in zip(first, replay):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other_step[0])
    assert 0 < (first[0] == 0).mean() < 1


def embedding_gradient(ids: np.ndarray, padding_idx):
    """The gradient of Σ embedding(ids) · r with respect to a (6, 3) table, through mindtorch's F.embedding."""
    table = mindspore.Parameter(Tensor(np.arange(18, dtype=np.float32).reshape(6, 3)), name="table")
    weights = Tensor(np.random.default_rng(0).normal(size=ids.shape + (3,)).astype(np.float32))
    loss_fn = lambda: ops.reduce_sum(ops.mul(F.embedding(torch.tensor(ids), table, padding_idx), weights))  # noqa: E731
    _, (grad,) = mindspore.value_and_grad(loss_fn, None, [table])()
    rows = F.embedding(torch.tensor(ids), table, padding_idx).asnumpy()
    return rows, grad.asnumpy(), weights.asnumpy()


def test_embedding_padding_row_gets_no_gradient():
    """mindtorch's CPU embedding ignored padding_idx in its backward (eager fine-tuning trained the padding
    rows); as torch: the rows looked up are unchanged, the padding row's gradient is zero, the others are
    the sums of their positions' weights."""
    ids = np.array([[1, 0, 4, 0], [4, 2, 0, 5]], np.int64)
    rows, grad, weights = embedding_gradient(ids, padding_idx=0)
    np.testing.assert_array_equal(rows, np.arange(18, dtype=np.float32).reshape(6, 3)[ids])
    expected = np.zeros((6, 3), np.float32)
    np.add.at(expected, ids, weights)
    expected[0] = 0.0
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)
    _, without_padding, _ = embedding_gradient(ids, padding_idx=None)
    assert np.abs(without_padding[0]).max() > 0  # no padding_idx: every looked-up row trains


def test_baddbmm_and_addmm_scale_as_torch_does():
    """beta scales the input, alpha the product (mindtorch 0.5.1 swapped them on CPU: BLOOM's attention)."""
    rng = np.random.default_rng(0)
    base, first, second = (rng.standard_normal(shape).astype(np.float32) for shape in ((2, 3, 4), (2, 3, 5), (2, 5, 4)))
    expected = 0.5 * base + 0.25 * first @ second
    tensors = [torch.tensor(array) for array in (base, first, second)]
    np.testing.assert_allclose(torch.baddbmm(*tensors, beta=0.5, alpha=0.25).asnumpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tensors[0].baddbmm(*tensors[1:], beta=0.5, alpha=0.25).asnumpy(), expected, rtol=1e-6,
                               atol=1e-6)
    matrices = [tensor[0] for tensor in tensors]
    np.testing.assert_allclose(torch.addmm(*matrices, beta=0.5, alpha=0.25).asnumpy(), expected[0], rtol=1e-6,
                               atol=1e-6)
