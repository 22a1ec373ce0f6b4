"""The heads' losses (ms_ptuning/losses.py) against torch's: values and gradients, op by op on MindSpore and
mindtorch tensors and compiled in GRAPH_MODE; rows padded with ignored labels change nothing."""

import os
import subprocess
import sys

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning.backend import torch
from ms_ptuning.losses import (sequence_classification_loss, span_extraction_loss, token_classification_loss,
                               token_nll)
from ms_ptuning.training.graph_steps import graph_mode, pad_rows

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = os.path.join(os.path.dirname(HERE), ".venv", "bin", "python")


def causal_lm_loss(logits, labels):
    """CausalLM's loss from token_nll: summed NLL over the summed count."""
    nll, count = token_nll(logits, labels)
    return ops.div(ops.reduce_sum(nll), ops.reduce_sum(count))


LOSSES = {"single_label": lambda z, y: sequence_classification_loss(z, y, "single_label_classification"),
          "regression": lambda z, y: sequence_classification_loss(z, y, "regression"),
          "multi_label": lambda z, y: sequence_classification_loss(z, y, "multi_label_classification"),
          "token_classification": token_classification_loss, "span_extraction": span_extraction_loss,
          "causal_lm": causal_lm_loss}
ARGUMENTS = {"single_label": ("logits", "labels"), "regression": ("logits", "labels"),
             "multi_label": ("logits", "labels"), "token_classification": ("logits", "labels", "attention_mask"),
             "span_extraction": ("start_logits", "end_logits", "start_positions", "end_positions"),
             "causal_lm": ("logits", "labels")}


def make_cases() -> dict:
    """Inputs exercising every ignore rule: -100 labels, masked tokens, an answer beyond the sequence, a
    logit of exactly 0 (where a BCE written with relu/abs would get a wrong gradient)."""
    rng = np.random.default_rng(0)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    multi_logits = normal(5, 4)
    multi_logits[0, 0] = 0.0
    token_labels = rng.integers(0, 4, (2, 6)).astype(np.int64)
    token_labels[0, 0] = -100
    token_mask = np.ones((2, 6), np.int64)
    token_mask[1, 4:] = 0
    lm_labels = rng.integers(0, 6, (2, 5)).astype(np.int64)
    lm_labels[1, 3:] = -100
    cases = {"single_label": {"logits": normal(5, 3), "labels": np.array([0, 2, -100, 1, 2], np.int64)},
             "regression": {"logits": normal(5, 1), "labels": normal(5) * 3},
             "multi_label": {"logits": multi_logits, "labels": rng.integers(0, 2, (5, 4)).astype(np.float32)},
             "token_classification": {"logits": normal(2, 6, 4), "labels": token_labels, "attention_mask": token_mask},
             "span_extraction": {"start_logits": normal(3, 7), "end_logits": normal(3, 7),
                                 "start_positions": np.array([1, 99, 6], np.int64),
                                 "end_positions": np.array([3, 2, 7], np.int64)},
             "causal_lm": {"logits": normal(2, 5, 6), "labels": lm_labels}}
    return cases


@pytest.fixture(scope="module")
def torch_results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("losses")
    cases = make_cases()
    np.savez(directory / "cases.npz", **{f"{case}.{name}": array for case, arrays in cases.items()
                                         for name, array in arrays.items()})
    command = [PYTHON if os.path.exists(PYTHON) else sys.executable, os.path.join(HERE, "torch_losses.py"),
               str(directory / "cases.npz"), str(directory / "results.npz")]
    subprocess.run(command, check=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    return cases, dict(np.load(directory / "results.npz"))


def differentiated(case: str) -> list:
    return [index for index, name in enumerate(ARGUMENTS[case]) if "logits" in name]


def loss_and_grads(case: str, arrays: dict, make_tensor=Tensor):
    inputs = [make_tensor(arrays[name]) for name in ARGUMENTS[case]]
    loss, grads = mindspore.value_and_grad(LOSSES[case], tuple(differentiated(case)))(*inputs)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return float(loss.asnumpy()), [g.asnumpy() for g in grads]


class CompiledLoss(nn.Cell):
    """The case's loss over four inputs (unused ones are placeholders): a differentiated graph function
    takes no *args."""

    def __init__(self, case: str):
        super().__init__()
        self.case = case

    def construct(self, first, second, third, fourth):
        if self.case == "single_label":
            return sequence_classification_loss(first, second, "single_label_classification")
        if self.case == "regression":
            return sequence_classification_loss(first, second, "regression")
        if self.case == "multi_label":
            return sequence_classification_loss(first, second, "multi_label_classification")
        if self.case == "token_classification":
            return token_classification_loss(first, second, third)
        if self.case == "span_extraction":
            return span_extraction_loss(first, second, third, fourth)
        return causal_lm_loss(first, second)


class CompiledValueAndGrad(nn.Cell):
    def __init__(self, case: str):
        super().__init__()
        self.loss, self.positions = CompiledLoss(case), tuple(differentiated(case))

    def construct(self, first, second, third, fourth):
        return ops.value_and_grad(self.loss, self.positions)(first, second, third, fourth)


def compiled_loss_and_grads(case: str, arrays: dict):
    inputs = [Tensor(arrays[name]) for name in ARGUMENTS[case]]
    inputs += [Tensor(np.zeros(1, np.float32))] * (4 - len(inputs))
    with graph_mode():
        loss, grads = CompiledValueAndGrad(case)(*inputs)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return float(loss.asnumpy()), [g.asnumpy() for g in grads]


def assert_matches_torch(case, loss, grads, reference):
    """Within float32 rounding: 1e-5 of the loss, and of the largest gradient entry (~80 ulp; MindSpore's and
    torch's log-softmax kernels round differently)."""
    expected = float(reference[f"{case}.loss"])
    assert abs(loss - expected) <= 1e-5 * abs(expected), (case, loss, expected)
    for index, grad in zip(differentiated(case), grads):
        torch_grad = reference[f"{case}.grad.{ARGUMENTS[case][index]}"]
        assert grad.shape == torch_grad.shape
        np.testing.assert_allclose(grad, torch_grad, rtol=0, atol=1e-5 * np.abs(torch_grad).max(), err_msg=case)


@pytest.mark.parametrize("case", list(LOSSES))
def test_losses_and_gradients_equal_torch_op_by_op(torch_results, case):
    cases, reference = torch_results
    assert_matches_torch(case, *loss_and_grads(case, cases[case]), reference)
    # the eager path feeds mindtorch tensors (labels from torch.tensor, logits of mindtorch modules)
    assert_matches_torch(case, *loss_and_grads(case, cases[case], make_tensor=torch.tensor), reference)


@pytest.mark.parametrize("case", list(LOSSES))
def test_losses_and_gradients_equal_torch_compiled(torch_results, case):
    cases, reference = torch_results
    assert_matches_torch(case, *compiled_loss_and_grads(case, cases[case]), reference)


@pytest.mark.parametrize("case", list(LOSSES))
def test_rows_padded_with_ignored_labels_change_nothing(torch_results, case):
    cases, _ = torch_results
    rows = len(cases[case][ARGUMENTS[case][0]])
    padded = pad_rows(cases[case], rows + 2)
    assert all(len(values) == rows + 2 for values in padded.values())
    loss, grads = loss_and_grads(case, cases[case])
    padded_loss, padded_grads = loss_and_grads(case, padded)
    assert abs(padded_loss - loss) <= 1e-6 * abs(loss)
    for grad, padded_grad in zip(grads, padded_grads):
        np.testing.assert_allclose(padded_grad[:rows], grad, rtol=0, atol=1e-7)
        assert not padded_grad[rows:].any()


def test_a_batch_without_counted_labels_gives_nan_as_torch():
    logits = Tensor(np.zeros((2, 3), np.float32))
    assert np.isnan(sequence_classification_loss(logits, Tensor(np.array([-100, -100])), "single_label_classification")
                    .asnumpy())
    assert np.isnan(sequence_classification_loss(Tensor(np.zeros((2, 1), np.float32)),
                                                 Tensor(np.full(2, np.nan, np.float32)), "regression").asnumpy())


def test_multi_label_gradient_follows_every_batch_shape():
    """MindSpore 2.7's CPU BCEWithLogitsLoss with a mean reduction scales its backward by the element count of
    the first shape the kernel ran on (a (3, 3) batch after a (4, 2) one got 8/9 of its gradient); the loss
    takes it element-wise and averages itself, so every shape in one process gets torch's values."""
    rng = np.random.default_rng(0)
    for shape in ((4, 2), (3, 3), (2, 2), (4, 2)):
        x = rng.normal(size=shape).astype(np.float32)
        y = rng.integers(0, 2, size=shape).astype(np.float32)
        logits = mindspore.Parameter(Tensor(x), name="logits")
        loss, (grad,) = mindspore.value_and_grad(
            lambda: sequence_classification_loss(ops.mul(logits, 1.0), Tensor(y), "multi_label_classification"),
            None, [logits])()
        probability = 1 / (1 + np.exp(-x.astype(np.float64)))
        expected_loss = -np.mean(y * np.log(probability) + (1 - y) * np.log(1 - probability))
        assert abs(float(loss.asnumpy()) - expected_loss) <= 1e-6
        np.testing.assert_allclose(grad.asnumpy(), (probability - y) / x.size, rtol=1e-5, atol=1e-8)
