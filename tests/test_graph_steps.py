"""GraphSteps, the compiled step engine, on a small pure-MindSpore classifier: 50 steps against the eager
update, padded short batches, non-finite and fp16-overflow steps, optimizer state and an exact resume with
dropout, compile logging, a model that does not compile, 2 msrun workers against one process."""

import os
import socket
import subprocess

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning.distributed import DataParallel
from ms_ptuning.layers import Linear
from ms_ptuning.losses import sequence_classification_loss
from ms_ptuning.training.graph_steps import GraphSteps
from ms_ptuning.training.optim import AdamW, clip_by_global_norm, global_norm
from ms_ptuning.training.precision import LossScaler
from ms_ptuning.training.schedules import lr_factor_fn
from ms_ptuning.weights import to_numpy, trainable_weights
from graph_steps_worker import main as train_toy
from toy_classifier import LENGTH, arguments, micro_batch_stream, rows, toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EagerUpdate:
    """The eager update on the same model kind: gradients op by op in PyNative (mindspore.value_and_grad),
    training/optim.py's AdamW, global_norm and clip_by_global_norm, as the eager engine runs them."""

    def __init__(self, model, args):
        self.model, self.args = model, args
        self.params = trainable_weights(model)
        self.optimizer = AdamW(self.params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                               eps=args.adam_epsilon, weight_decay=args.weight_decay)
        self.grad_fn = mindspore.value_and_grad(self._loss, None, list(self.params.values()))

    def _loss(self, input_ids, attention_mask, labels):
        return ops.div(self.model(input_ids, attention_mask, labels)[0], self.args.gradient_accumulation_steps)

    def step(self, micro_batches: list, lr: float):
        self.model.set_train(True)
        loss, grads = None, None
        for batch in micro_batches:
            micro_loss, micro_grads = self.grad_fn(*(Tensor(batch[name]) for name in ("input_ids", "attention_mask",
                                                                                       "labels")))
            micro_grads = dict(zip(self.params, micro_grads))
            loss = micro_loss if loss is None else ops.add(loss, micro_loss)
            grads = micro_grads if grads is None else {n: ops.add(grads[n], g) for n, g in micro_grads.items()}
        norm = global_norm(grads)
        self.optimizer.step(clip_by_global_norm(grads, self.args.max_grad_norm, norm), lr)
        return float(loss.asnumpy()), float(norm.asnumpy())


def graph_steps(model, args, loss_scaler=None) -> GraphSteps:
    return GraphSteps(model, trainable_weights(model), args, loss_scaler or LossScaler("none"), DataParallel())


@pytest.mark.parametrize("accumulation", [1, 2])  # the one-graph step, and the accumulating graphs
def test_fifty_steps_match_the_eager_update(tmp_path, accumulation):
    """Warmup + linear decay, clipping active, weight decay, a short batch every epoch: losses within 1e-4
    relative at every step, final weights within 1e-5; the frozen table never moves."""
    args = arguments(tmp_path, gradient_accumulation_steps=accumulation, max_grad_norm=0.5, warmup_steps=5)
    graph_model, eager_model = toy(), toy()
    frozen = graph_model.word_embeddings.weight.asnumpy().copy()
    graph, eager = graph_steps(graph_model, args), EagerUpdate(eager_model, args)
    lr_factor = lr_factor_fn("linear", 5, 50, args.learning_rate)
    stream, norms, short = micro_batch_stream(), [], 0
    for step in range(50):
        micro_batches = [next(stream) for _ in range(accumulation)]
        short += sum(len(batch["labels"]) < 4 for batch in micro_batches)
        lr = args.learning_rate * lr_factor(step)
        result = graph.train_step(micro_batches, list(range(accumulation * step, accumulation * (step + 1))), lr)
        eager_loss, eager_norm = eager.step(micro_batches, lr)
        assert result.applied
        assert abs(result.loss - eager_loss) <= 1e-4 * abs(eager_loss), (step, result.loss, eager_loss)
        assert abs(result.grad_norm - eager_norm) <= 1e-4 * eager_norm, step
        norms.append(eager_norm)
    assert sum(norm > 0.5 for norm in norms) >= 10 and short >= 5  # clipping and padding both exercised
    expected = to_numpy(trainable_weights(eager_model))
    for name, actual in to_numpy(trainable_weights(graph_model)).items():
        np.testing.assert_allclose(actual, expected[name], rtol=0, atol=1e-5, err_msg=name)
    assert np.array_equal(graph_model.word_embeddings.weight.asnumpy(), frozen)
    assert graph.optimizer_state()["step"][0] == 50


def test_a_padded_short_batch_trains_and_predicts_as_the_unpadded_one(tmp_path):
    batch = rows(3, seed=5)
    padded_model, exact_model = toy(), toy()
    padded = graph_steps(padded_model, arguments(tmp_path, per_device_train_batch_size=4, per_device_eval_batch_size=4))
    exact = graph_steps(exact_model, arguments(tmp_path, per_device_train_batch_size=3, per_device_eval_batch_size=3))
    for step in range(2):
        padded_result, exact_result = padded.train_step([batch], [step], 1e-2), exact.train_step([batch], [step], 1e-2)
        assert abs(padded_result.loss - exact_result.loss) <= 1e-6 * exact_result.loss
    expected = to_numpy(trainable_weights(exact_model))
    for name, actual in to_numpy(trainable_weights(padded_model)).items():
        np.testing.assert_allclose(actual, expected[name], rtol=0, atol=1e-6, err_msg=name)
    (padded_loss, padded_logits), (exact_loss, exact_logits) = padded.eval_step(batch), exact.eval_step(batch)
    assert padded_logits.shape == (3, 3)
    np.testing.assert_allclose(padded_logits, exact_logits, rtol=0, atol=1e-6)
    assert abs(padded_loss - exact_loss) <= 1e-6 * exact_loss
    loss, logits = padded.eval_step({name: values for name, values in batch.items() if name != "labels"})
    assert loss is None and np.allclose(logits, padded_logits, atol=1e-6)


def test_a_non_finite_step_is_not_applied_and_leaves_nothing_behind(tmp_path):
    args = arguments(tmp_path)
    model = toy()
    steps = graph_steps(model, args)
    batch = rows(4, seed=6)
    before, state = to_numpy(trainable_weights(model)), steps.optimizer_state()
    table = model.word_embeddings.weight.asnumpy().copy()
    broken = table.copy()
    broken[batch["input_ids"][0, 0]] = np.inf
    model.word_embeddings.weight.set_data(Tensor(broken))
    result = steps.train_step([batch], [0], 1e-2)
    assert not result.applied and not np.isfinite(result.loss)
    for name, value in to_numpy(trainable_weights(model)).items():
        assert np.array_equal(value, before[name]), name
    assert all(np.array_equal(value, state[name]) for name, value in steps.optimizer_state().items())
    model.word_embeddings.weight.set_data(Tensor(table))
    # the next step starts from cleared accumulators: it is a fresh engine's first step
    result = steps.train_step([batch], [1], 1e-2)
    reference = toy()
    reference_loss, _ = EagerUpdate(reference, args).step([batch], 1e-2)
    assert result.applied and abs(result.loss - reference_loss) <= 1e-5 * reference_loss
    expected = to_numpy(trainable_weights(reference))
    for name, actual in to_numpy(trainable_weights(model)).items():
        np.testing.assert_allclose(actual, expected[name], rtol=0, atol=1e-6, err_msg=name)


def test_an_overflow_under_loss_scaling_is_skipped_and_the_scale_backs_off(tmp_path):
    """Regression targets near 100 scaled by 2^127 overflow float32; one back-off to 2^10 makes them fit.
    Powers of two scale exactly, so the applied step equals an unscaled one."""
    args = arguments(tmp_path)
    scaler = LossScaler("dynamic", init_scale=2.0**127, backoff_factor=2.0**-117, growth_interval=2)
    model = toy("regression")
    steps = graph_steps(model, args, scaler)
    batch = rows(4, seed=7, regression=True)
    before = to_numpy(trainable_weights(model))
    skipped = steps.train_step([batch], [0], 1e-2)
    assert not skipped.applied and scaler.loss_scale == 2.0**10 and scaler.growth_tracker == 0
    assert all(np.array_equal(value, before[name]) for name, value in to_numpy(trainable_weights(model)).items())
    assert steps.optimizer_state()["step"][0] == 0
    applied = steps.train_step([batch], [1], 1e-2)
    reference = toy("regression")
    reference_loss, _ = EagerUpdate(reference, args).step([batch], 1e-2)
    assert applied.applied and abs(applied.loss - reference_loss) <= 1e-6 * reference_loss
    expected = to_numpy(trainable_weights(reference))
    for name, actual in to_numpy(trainable_weights(model)).items():
        np.testing.assert_allclose(actual, expected[name], rtol=0, atol=1e-6, err_msg=name)
    steps.train_step([batch], [2], 1e-2)
    assert scaler.loss_scale == 2.0**11  # two finite steps in a row grow it


def test_resuming_from_weights_and_optimizer_state_replays_the_run_with_its_dropout(tmp_path):
    """Dropout 0.3, accumulation 2: a run resumed after step 2 in a rebuilt model (as a new process would
    build it) ends bit for bit on the uninterrupted run's weights, with the same losses."""
    args = arguments(tmp_path, gradient_accumulation_steps=2)
    batches = [rows(4, seed=10 + index) for index in range(8)]

    def run(steps, first, last):
        return [steps.train_step(batches[2 * s:2 * s + 2], [2 * s, 2 * s + 1], 1e-2).loss for s in range(first, last)]

    straight_model = toy(dropout=0.3)
    straight = graph_steps(straight_model, args)
    straight_losses = run(straight, 0, 4)
    first_model = toy(dropout=0.3)
    first = graph_steps(first_model, args)
    run(first, 0, 2)
    weights, state = to_numpy(trainable_weights(first_model)), first.optimizer_state()
    resumed_model = toy(dropout=0.3)
    for name, param in trainable_weights(resumed_model).items():
        param.set_data(Tensor(weights[name]))
    resumed = graph_steps(resumed_model, args)
    resumed.load_optimizer_state(state)
    assert all(np.array_equal(value, state[name]) for name, value in resumed.optimizer_state().items())
    assert run(resumed, 2, 4) == straight_losses[2:]
    expected = to_numpy(trainable_weights(straight_model))
    for name, actual in to_numpy(trainable_weights(resumed_model)).items():
        assert np.array_equal(actual, expected[name]), name
    without_dropout = graph_steps(toy(dropout=0.0), args)
    assert run(without_dropout, 0, 1) != straight_losses[:1]  # the masks did change the run


@pytest.mark.parametrize("accumulation, graphs", [(1, ()), (2, ("gradient reduction graph",
                                                                 "optimizer update graph"))])
def test_each_graph_is_compiled_and_logged_once_per_shape(tmp_path, capsys, accumulation, graphs):
    """One graph for a whole step without accumulation; with it, the accumulating step graph, the reduction
    and the update."""
    steps = graph_steps(toy(), arguments(tmp_path, gradient_accumulation_steps=accumulation))
    for step in range(3):  # 2 rows: padded, the same shape
        steps.train_step([rows(4 if step < 2 else 2, seed=step)] * accumulation, [step] * accumulation, 1e-2)
    steps.eval_step(rows(4, seed=0))
    steps.eval_step(rows(5, seed=0))  # more rows than the eval batch size: a new shape
    lines = [line for line in capsys.readouterr().out.splitlines() if "compiled the" in line]
    assert sum("train step graph (input_ids 4×6, attention_mask 4×6, labels 4)" in line for line in lines) == 1
    assert sum("eval step graph" in line for line in lines) == 2
    assert all(sum(graph in line for line in lines) == 1 for graph in graphs)
    assert len(lines) == 3 + len(graphs)


class NotCompilable(nn.Cell):
    def __init__(self):
        super().__init__()
        self.head = Linear(LENGTH, 3)

    def construct(self, input_ids, attention_mask, labels=None):
        logits = self.head(Tensor(input_ids.asnumpy().astype(np.float32)))  # host round trip: no graph
        return sequence_classification_loss(logits, labels, "single_label_classification"), logits


def test_a_model_that_does_not_compile_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MindSpore writes rank_0/om/analyze_fail.ir into the working directory
    model = NotCompilable()
    with pytest.raises(RuntimeError, match="does not compile in GRAPH_MODE"):
        graph_steps(model, arguments(tmp_path)).train_step([rows(4, seed=0)], [0], 1e-2)
    assert mindspore.get_context("mode") == mindspore.PYNATIVE_MODE  # the eager code that follows still runs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_msrun_workers_reach_the_weights_of_one_process(tmp_path):
    """The accumulated gradients are all-reduced inside the reduce graph: 2 workers with shards of 2 take
    the steps one process takes on global batches of 4, dropout on, including a last batch of 1 row that
    leaves worker 1 nothing (zero weight) and a shard of 1 padded to 2."""
    train_toy(str(tmp_path / "single.npz"), 4)
    env = dict(os.environ, PYTHONPATH=ROOT, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    command = [os.path.join(ROOT, ".venv", "bin", "msrun"), "--worker_num", "2", "--local_worker_num", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "--join", "True",
               "--log_dir", str(tmp_path / "logs"), "--cluster_time_out", "300",
               "python", os.path.join(ROOT, "tests", "graph_steps_worker.py"), str(tmp_path / "parallel.npz"), "2"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    logs = "".join(open(tmp_path / "logs" / name, errors="replace").read()[-2000:]
                   for name in sorted(os.listdir(tmp_path / "logs")))
    assert result.returncode == 0, result.stderr[-2000:] + logs
    single, parallel = np.load(tmp_path / "single.npz"), np.load(tmp_path / "parallel.npz")
    np.testing.assert_allclose(parallel["losses"], single["losses"], rtol=1e-5)
    for name in single.files:
        np.testing.assert_allclose(parallel[name], single[name], rtol=0, atol=1e-6, err_msg=name)
