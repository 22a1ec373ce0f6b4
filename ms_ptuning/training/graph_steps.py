"""`GraphSteps`: the step engine (steps.py) with the whole optimizer step compiled as MindSpore graphs.

The model must be made of MindSpore Cells that compile in GRAPH_MODE (the native backbones, our encoders
and heads); mindnlp's modules do not, and run on `EagerSteps`. Five graphs, each compiled on first use, the
two with the model once per input shape (one log line per compilation):
  accumulate  one micro-batch: key the dropout masks (layers.DROPOUT_KEY), forward, loss / accumulation
              steps × loss scale × the shard's share of the global batch, gradients of the trainable
              parameters only, added to accumulator Parameters;
  reduce      the accumulated loss and gradients summed over the workers (one all-reduce), unscaled, and
              the gradients' global norm;
  update      clipping with torch's clip_grad_norm_ formula and AdamW (or Adam with L2 decay, optim="adam_l2")
              with torch's formula (optim.AdamW's fused kernel and scalars), then the accumulators cleared;
  clear       the accumulators cleared without an update (a non-finite step);
  forward     the eval-mode forward.
Between reduce and update the host reads the loss and the norm (the Trainer logs both), decides whether
the step is finite and updates the loss scaler with GradScaler's rule (precision.LossScaler), exactly as
EagerSteps does.

Fixed shapes: a micro-batch shard is padded to per_device_train_batch_size rows and an eval batch to
per_device_eval_batch_size rows with copies of the first row whose labels are ignored
(losses.ignored_label), so a short last batch reuses the compiled graph, its padded rows change neither
the loss nor the gradients, and their outputs are dropped.
"""

import contextlib
import math
import time

import mindspore
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from ..encoders.folding import compile_encoders
from ..layers import DROPOUT_KEY
from ..losses import LABEL_COLUMNS, ignored_label
from .optim import AdamW, build_optimizer, with_l2
from .steps import StepResult

JIT_CONFIG = mindspore.JitConfig(jit_level="O0")  # O1 adds nothing on CPU and compiles longer


@contextlib.contextmanager
def graph_mode():
    """Run compiled Cells in GRAPH_MODE, then restore the previous mode (mindnlp's eager modules need
    PyNative). Switching costs well under a millisecond; compiled graphs stay cached."""
    previous = mindspore.get_context("mode")
    mindspore.set_context(mode=mindspore.GRAPH_MODE)
    try:
        yield
    finally:
        mindspore.set_context(mode=previous)


def pad_rows(batch: dict, rows: int) -> dict:
    """`batch` (numpy columns) with copies of its first row appended up to `rows` rows, their labels
    replaced by values every loss ignores."""
    padded = {}
    for name, values in batch.items():
        missing = rows - len(values)
        if missing <= 0:
            padded[name] = values
            continue
        filler = np.repeat(values[:1], missing, axis=0)
        if name in LABEL_COLUMNS:
            filler = np.full_like(filler, ignored_label(name, values.dtype))
        padded[name] = np.concatenate([values, filler])
    return padded


def row_count(batch: dict) -> int:
    return len(next(iter(batch.values())))


class ModelCall(nn.Cell):
    """`model(**inputs)` with the inputs given positionally in `names` order: a graph's inputs are tensors,
    not a dict. `auto_prefix=False` keeps the model's parameter names as they are."""

    def __init__(self, model, names: tuple):
        super().__init__(auto_prefix=False)
        self.model, self.names = model, names

    def construct(self, *inputs):
        named = {}
        for index in range(len(self.names)):
            named[self.names[index]] = inputs[index]
        return self.model(**named)


class ScaledLoss(nn.Cell):
    """What a micro-batch contributes to the step's loss, in EagerSteps' order of operations."""

    def __init__(self, call: ModelCall, accumulation_steps: int):
        super().__init__(auto_prefix=False)
        self.call, self.accumulation_steps = call, accumulation_steps

    def construct(self, share, loss_scale, inputs):  # a tuple: value_and_grad takes no *varargs function
        loss, _ = self.call(*inputs)
        return ops.mul(ops.mul(ops.div(loss, self.accumulation_steps), loss_scale), share)


class Accumulate(nn.Cell):
    """One micro-batch's loss and gradients added to the accumulators; masks keyed by `dropout_key`."""

    def __init__(self, loss: ScaledLoss, params: list, accumulators: list, loss_sum: Parameter):
        super().__init__(auto_prefix=False)
        self.loss, self.loss_sum = loss, loss_sum
        self.params, self.accumulators = ParameterTuple(params), ParameterTuple(accumulators)

    def construct(self, dropout_key, share, loss_scale, *inputs):
        ops.assign(DROPOUT_KEY.value, dropout_key)  # before the forward reads it (ordered by auto-monad)
        loss, grads = ops.value_and_grad(self.loss, None, self.params)(share, loss_scale, inputs)
        for accumulator, grad in zip(self.accumulators, grads):
            ops.assign_add(accumulator, grad)
        ops.assign_add(self.loss_sum, loss)
        return loss


class Reduce(nn.Cell):
    """Accumulated loss and gradients summed over the workers, gradients unscaled in place → (loss, norm)."""

    def __init__(self, accumulators: list, loss_sum: Parameter, world_size: int, unscale: bool):
        super().__init__(auto_prefix=False)
        self.accumulators, self.loss_sum = ParameterTuple(accumulators), loss_sum
        self.sizes = tuple(int(np.prod(a.shape)) for a in accumulators)
        self.all_reduce = ops.AllReduce() if world_size > 1 else None
        self.unscale = unscale

    def construct(self, inverse_scale):
        if self.all_reduce is not None:  # one collective for every tensor, as distributed.DataParallel
            pieces = [ops.reshape(a, (-1,)) for a in self.accumulators] + [ops.reshape(self.loss_sum, (1,))]
            summed = ops.split(self.all_reduce(ops.cat(pieces)), self.sizes + (1,))
            for accumulator, total in zip(self.accumulators, summed):
                ops.assign(accumulator, ops.reshape(total, accumulator.shape))
            ops.assign(self.loss_sum, ops.reshape(summed[-1], ()))
        if self.unscale:
            for accumulator in self.accumulators:
                ops.assign(accumulator, ops.mul(accumulator, inverse_scale))
        norm = ops.sqrt(ops.addn([ops.reduce_sum(ops.square(a)) for a in self.accumulators]))
        return self.loss_sum, norm


class Clear(nn.Cell):
    """Accumulated gradients and loss back to zero."""

    def __init__(self, accumulators: list, loss_sum: Parameter):
        super().__init__(auto_prefix=False)
        self.accumulators, self.loss_sum = ParameterTuple(accumulators), loss_sum

    def construct(self):
        for accumulator in self.accumulators:
            ops.assign(accumulator, ops.zeros_like(accumulator))
        ops.assign(self.loss_sum, ops.zeros_like(self.loss_sum))
        return self.loss_sum


class Update(nn.Cell):
    """Clip (when max_grad_norm > 0), the optimizer's fused step per parameter (decoupled decay where
    `AdamW.decay_factor` says, or the L2 term added to the gradient), then clear the accumulators."""

    def __init__(self, optimizer: AdamW, accumulators: list, max_grad_norm: float, clear: Clear):
        super().__init__(auto_prefix=False)
        names = list(optimizer.params)
        self.params = ParameterTuple(list(optimizer.params.values()))
        self.exp_avg = ParameterTuple([optimizer.exp_avg[name] for name in names])
        self.exp_avg_sq = ParameterTuple([optimizer.exp_avg_sq[name] for name in names])
        self.accumulators, self.clear = ParameterTuple(accumulators), clear
        self.decay_factors = tuple(optimizer.decay_factor(name) for name in names)
        self.l2 = optimizer.l2
        self.beta1, self.beta2 = optimizer.betas
        self.max_grad_norm = float(max_grad_norm or 0.0)
        self.adam = ops.AdamWeightDecay()

    def construct(self, norm, lr, eps, decay):
        clip = self.max_grad_norm > 0  # fixed at compile time
        coefficient = ops.clamp(ops.div(self.max_grad_norm, ops.add(norm, 1e-6)), max=1.0) if clip else None
        for index in range(len(self.params)):
            grad = ops.mul(self.accumulators[index], coefficient) if clip else self.accumulators[index]
            grad = with_l2(grad, self.params[index], self.l2)
            self.adam(self.params[index], self.exp_avg[index], self.exp_avg_sq[index], lr, self.beta1, self.beta2,
                      eps, ops.mul(decay, self.decay_factors[index]), grad)
        return self.clear()


class GraphSteps:
    """Steps(model, params, args, loss_scaler, parallel), see steps.py, with compiled graphs."""

    def __init__(self, model, params: dict, args, loss_scaler, parallel):
        self.model, self.params, self.args = model, params, args
        self.loss_scaler, self.parallel = loss_scaler, parallel
        compile_encoders(model, enabled=False)  # their PyNative-only `mindspore.jit` pieces: the graphs hold them
        self.optimizer = build_optimizer(params, args)
        self.accumulators = [Parameter(ops.zeros(tuple(p.shape), p.dtype), name=f"accumulated_grad.{name}",
                                       requires_grad=False) for name, p in params.items()]
        self.loss_sum = Parameter(Tensor(0.0, mindspore.float32), name="accumulated_loss", requires_grad=False)
        self.clear = Clear(self.accumulators, self.loss_sum)
        self.reduce = Reduce(self.accumulators, self.loss_sum, parallel.world_size, loss_scaler.kind != "none")
        self.update = Update(self.optimizer, self.accumulators, args.max_grad_norm, self.clear)
        self.accumulate_graphs, self.forward_graphs = {}, {}  # by input column names
        self.compiled = set()  # (graph, input shapes and dtypes) already compiled
        self.compile_seconds = {}  # label of each compiled graph → seconds its compilation took

    # ---- training -------------------------------------------------------------------------------
    def train_step(self, micro_batches: list, seeds: list, lr: float) -> StepResult:
        for batch, seed in zip(micro_batches, seeds, strict=True):
            self._accumulate(batch, seed)
        inverse_scale = Tensor(1.0 / self.loss_scaler.loss_scale, mindspore.float32)
        loss_sum, norm = self._launch(self.reduce, "gradient reduction graph", inverse_scale)
        step_loss = float(loss_sum.asnumpy()) / self.loss_scaler.loss_scale
        grad_norm = float(norm.asnumpy())
        finite = math.isfinite(step_loss) and math.isfinite(grad_norm)
        if not finite and not self.loss_scaler.skips_non_finite:
            self._launch(self.clear, "gradient clearing graph")
            return StepResult(step_loss, grad_norm, applied=False)
        self.loss_scaler.update(finite)
        if finite:
            scalars = [Tensor(value, mindspore.float32) for value in self.optimizer.advance(lr)]
            self._launch(self.update, "optimizer update graph", norm, *scalars)
        else:  # an fp16 overflow: skipped, as GradScaler skips it
            self._launch(self.clear, "gradient clearing graph")
        return StepResult(step_loss, grad_norm, applied=finite)

    def _accumulate(self, global_batch: dict, seed: int) -> None:
        """This worker's shard of a global micro-batch, weighted by its share of the batch so that the sum
        over workers is the whole batch's loss and gradient, padded to the per-device batch size."""
        per_device = self.args.per_device_train_batch_size
        shard = {name: self.parallel.shard(values, per_device) for name, values in global_batch.items()}
        share = row_count(shard) / row_count(global_batch)
        if row_count(shard) == 0:  # a short last batch left this worker nothing: real rows, zero weight
            shard = {name: values[:1] for name, values in global_batch.items()}
        inputs = pad_rows(shard, per_device)
        names = tuple(inputs)
        if names not in self.accumulate_graphs:
            loss = ScaledLoss(ModelCall(self.model, names), self.args.gradient_accumulation_steps)
            self.accumulate_graphs[names] = Accumulate(loss, list(self.params.values()), self.accumulators,
                                                       self.loss_sum)
        dropout_key = Tensor(np.array([self.args.seed, seed, self.parallel.rank], np.int64))
        self._launch(self.accumulate_graphs[names], f"train step graph ({describe(inputs)})", dropout_key,
                     Tensor(share, mindspore.float32), Tensor(self.loss_scaler.loss_scale, mindspore.float32),
                     *to_tensors(inputs), training=True)

    # ---- evaluation and state -------------------------------------------------------------------
    def eval_step(self, batch: dict):
        rows = row_count(batch)
        inputs = pad_rows(batch, self.args.per_device_eval_batch_size)
        names = tuple(inputs)
        if names not in self.forward_graphs:
            self.forward_graphs[names] = ModelCall(self.model, names)
        loss, output = self._launch(self.forward_graphs[names], f"eval step graph ({describe(inputs)})",
                                    *to_tensors(inputs), training=False)
        outputs = tuple(o.asnumpy()[:rows] for o in output) if isinstance(output, tuple) else output.asnumpy()[:rows]
        return (None if loss is None else float(loss.asnumpy())), outputs

    def optimizer_state(self) -> dict:
        return self.optimizer.state_arrays()

    def load_optimizer_state(self, arrays: dict) -> None:
        self.optimizer.load_state_arrays(arrays)

    # ---- compilation ----------------------------------------------------------------------------
    def _launch(self, graph: nn.Cell, label: str, *inputs, training: bool = False):
        return launch(graph, label, inputs, self.compiled, training, print if self.parallel.is_main else None,
                      self.compile_seconds)


def launch(graph: nn.Cell, label: str, inputs, compiled: set, training: bool = False, announce=print,
           compile_seconds: dict = None):
    """Run `graph` in GRAPH_MODE, compiling it first for a new input signature (timed, announced once
    unless `announce` is None, the seconds kept in `compile_seconds` by label when given); `compiled`
    holds the signatures compiled so far."""
    signature = (id(graph), tuple((tuple(x.shape), x.dtype) for x in inputs))
    with graph_mode():
        if signature not in compiled:
            graph.set_train(training)  # dropout on or off is fixed in the compiled graph
            graph.set_jit_config(JIT_CONFIG)
            started = time.perf_counter()
            try:
                graph.compile(*inputs)
            except (RuntimeError, TypeError, ValueError) as error:
                raise RuntimeError(f"the {label} does not compile in GRAPH_MODE: models with mindnlp "
                                   "modules run on the eager engine (see the error above)") from error
            compiled.add(signature)
            seconds = time.perf_counter() - started
            if compile_seconds is not None:
                compile_seconds[label] = seconds
            if announce is not None:
                announce(f"[ms_ptuning] compiled the {label} in {seconds:.1f} s")
        return graph(*inputs)


def describe(batch: dict) -> str:
    return ", ".join(f"{name} {'×'.join(map(str, values.shape))}" for name, values in batch.items())


def to_tensors(batch: dict) -> list:
    return [Tensor(np.ascontiguousarray(values)) for values in batch.values()]
