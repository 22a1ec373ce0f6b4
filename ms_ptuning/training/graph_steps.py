"""`GraphSteps`: the step engine (steps.py) with the whole optimizer step compiled as MindSpore graphs.

The model must be made of MindSpore Cells that compile in GRAPH_MODE (the native backbones, our encoders
and heads); mindnlp's modules do not, and run on `EagerSteps`. Graphs are compiled on first use, those
with the model once per input shape (one log line per compilation).

Without gradient accumulation a training step is one graph, `Step`: key the dropout masks
(layers.DROPOUT_KEY), forward, loss × loss scale × the shard's share of the global batch, gradients of the
trainable parameters only, summed over the workers (one all-reduce), unscaled, their global norm, and, only
if the loss and the norm are finite, clipping with torch's clip_grad_norm_ formula and AdamW (or Adam with
L2 decay, optim="adam_l2") with torch's formula (optim.AdamW's fused kernel and scalars). The host then reads
the loss, the norm and whether the update ran, and updates the loss scaler with GradScaler's rule
(precision.LossScaler), exactly as EagerSteps does. The gradients live only inside the graph: no
accumulator (a copy of the trainable weights, 440 MB for BERT-base fine-tuning) is kept.

With gradient_accumulation_steps > 1 the same pieces are split over four graphs around accumulator
Parameters: `Accumulate` (one micro-batch's loss / accumulation steps and gradients added to them),
`Reduce` (all-reduce, unscale, norm, in place), then, as the host decides from the loss and the norm,
`Update` (clip, optimizer, clear) or `Clear`. The eval-mode forward is a graph of its own.

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

from ..device.jit import jit_config
from ..encoders.folding import compile_encoders
from ..layers import DROPOUT_KEY, step_key
from ..losses import LABEL_COLUMNS, ignored_label
from ..native.recompute import recompute_layers
from .optim import AdamW, build_optimizer, with_l2
from .steps import StepResult, worker_shard

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
    """`model(**inputs)` → (loss, outputs) with the inputs given positionally in `names` order: a graph's
    inputs are tensors, not a dict. Without labels the loss is an empty tuple, not None: MindSpore 2.7
    returns a None from a graph through a host-side Python node (PyExecute). `auto_prefix=False` keeps the
    model's parameter names as they are."""

    def __init__(self, model, names: tuple):
        super().__init__(auto_prefix=False)
        self.model, self.names = model, names

    def construct(self, *inputs):
        named = {}
        for index in range(len(self.names)):
            named[self.names[index]] = inputs[index]
        loss, outputs = self.model(**named)
        if loss is None:
            return (), outputs
        return loss, outputs


class ScaledLoss(nn.Cell):
    """What a micro-batch contributes to the step's loss, in EagerSteps' order of operations."""

    def __init__(self, call: ModelCall, accumulation_steps: int):
        super().__init__(auto_prefix=False)
        self.call, self.accumulation_steps = call, accumulation_steps

    def construct(self, share, loss_scale, inputs):  # a tuple: value_and_grad takes no *varargs function
        loss, _ = self.call(*inputs)
        return ops.mul(ops.mul(ops.div(loss, self.accumulation_steps), loss_scale), share)


class Reduction(nn.Cell):
    """(loss, gradients) summed over the workers (one all-reduce), gradients unscaled → (loss, gradients, norm)."""

    def __init__(self, shapes: list, world_size: int, unscale: bool):
        super().__init__(auto_prefix=False)
        self.sizes = tuple(int(np.prod(shape)) for shape in shapes)
        self.all_reduce = ops.AllReduce() if world_size > 1 else None
        self.unscale = unscale

    def construct(self, loss, grads, inverse_scale):
        if self.all_reduce is not None:  # one collective for every tensor, as distributed.DataParallel
            pieces = [ops.reshape(g, (-1,)) for g in grads] + [ops.reshape(loss, (1,))]
            summed = ops.split(self.all_reduce(ops.cat(pieces)), self.sizes + (1,))
            grads = tuple(ops.reshape(total, g.shape) for g, total in zip(grads, summed))
            loss = ops.reshape(summed[-1], ())
        if self.unscale:
            grads = tuple(ops.mul(g, inverse_scale) for g in grads)
        norm = ops.sqrt(ops.addn([ops.reduce_sum(ops.square(g)) for g in grads]))
        return loss, grads, norm


class OptimizerUpdate(nn.Cell):
    """Clip (when max_grad_norm > 0), then the optimizer's fused step per parameter (decoupled decay where
    `AdamW.decay_factor` says, or the L2 term added to the gradient)."""

    def __init__(self, optimizer: AdamW, max_grad_norm: float):
        super().__init__(auto_prefix=False)
        names = list(optimizer.params)
        self.params = ParameterTuple(list(optimizer.params.values()))
        self.exp_avg = ParameterTuple([optimizer.exp_avg[name] for name in names])
        self.exp_avg_sq = ParameterTuple([optimizer.exp_avg_sq[name] for name in names])
        self.decay_factors = tuple(optimizer.decay_factor(name) for name in names)
        self.l2 = optimizer.l2
        self.beta1, self.beta2 = optimizer.betas
        self.max_grad_norm = float(max_grad_norm or 0.0)
        self.adam = ops.AdamWeightDecay()

    def construct(self, grads, norm, lr, eps, decay):
        clip = self.max_grad_norm > 0  # fixed at compile time
        coefficient = ops.clamp(ops.div(self.max_grad_norm, ops.add(norm, 1e-6)), max=1.0) if clip else None
        for index in range(len(self.params)):
            grad = ops.mul(grads[index], coefficient) if clip else grads[index]
            grad = with_l2(grad, self.params[index], self.l2)
            self.adam(self.params[index], self.exp_avg[index], self.exp_avg_sq[index], lr, self.beta1, self.beta2,
                      eps, ops.mul(decay, self.decay_factors[index]), grad)
        return norm


class Step(nn.Cell):
    """A whole optimizer step over one micro-batch (no gradient accumulation), one launch: masks keyed by
    `dropout_key`, forward, gradients, the reduction, and the update only when the loss and the norm are
    finite (a non-finite step changes no weight and no optimizer state) → (loss, norm, applied).

    The graph `if` costs a tiny model's step 10–15% more CPU time than the three graphs of the accumulating
    path or a branch-free update run as a no-op (zero gradients, β = 1, lr = 0), at the same wall time; the
    branch-free variant's NaN-free copy of every gradient cost BERT-base fine-tuning 800 MB and twice the
    compile time."""

    def __init__(self, loss: ScaledLoss, params: list, reduction: Reduction, update: OptimizerUpdate):
        super().__init__(auto_prefix=False)
        self.loss, self.params = loss, ParameterTuple(params)
        self.reduction, self.update = reduction, update

    def construct(self, inverse_scale, lr, eps, decay, dropout_key, share, loss_scale, *inputs):
        ops.assign(DROPOUT_KEY.value, dropout_key)  # before the forward reads it (ordered by auto-monad)
        loss, grads = ops.value_and_grad(self.loss, None, self.params)(share, loss_scale, inputs)
        loss, grads, norm = self.reduction(loss, grads, inverse_scale)
        finite = ops.logical_and(ops.isfinite(loss), ops.isfinite(norm))
        if finite:
            self.update(grads, norm, lr, eps, decay)
        return loss, norm, finite


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
    """The accumulated loss and gradients through `Reduction`, written back in place → (loss, norm)."""

    def __init__(self, accumulators: list, loss_sum: Parameter, reduction: Reduction):
        super().__init__(auto_prefix=False)
        self.accumulators, self.loss_sum, self.reduction = ParameterTuple(accumulators), loss_sum, reduction

    def construct(self, inverse_scale):
        loss, grads, norm = self.reduction(self.loss_sum, tuple(self.accumulators), inverse_scale)
        for accumulator, grad in zip(self.accumulators, grads):
            ops.assign(accumulator, grad)
        ops.assign(self.loss_sum, loss)
        return loss, norm


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
    """`OptimizerUpdate` with the accumulated gradients, then the accumulators cleared."""

    def __init__(self, update: OptimizerUpdate, accumulators: list, clear: Clear):
        super().__init__(auto_prefix=False)
        self.update, self.accumulators, self.clear = update, ParameterTuple(accumulators), clear

    def construct(self, norm, lr, eps, decay):
        self.update(tuple(self.accumulators), norm, lr, eps, decay)
        return self.clear()


class Accumulation:
    """The graphs of a step over several micro-batches, and the gradient accumulators they share (built only
    when gradient_accumulation_steps > 1: they cost one more copy of the trainable weights)."""

    def __init__(self, params: dict, reduction: Reduction, update: OptimizerUpdate):
        self.accumulators = [Parameter(ops.zeros(tuple(p.shape), p.dtype), name=f"accumulated_grad.{name}",
                                       requires_grad=False) for name, p in params.items()]
        self.loss_sum = Parameter(Tensor(0.0, mindspore.float32), name="accumulated_loss", requires_grad=False)
        self.clear = Clear(self.accumulators, self.loss_sum)
        self.reduce = Reduce(self.accumulators, self.loss_sum, reduction)
        self.update = Update(update, self.accumulators, self.clear)


class GraphSteps:
    """Steps(model, params, args, loss_scaler, parallel), see steps.py, with compiled graphs."""

    def __init__(self, model, params: dict, args, loss_scaler, parallel):
        self.model, self.params, self.args = model, params, args
        self.loss_scaler, self.parallel = loss_scaler, parallel
        compile_encoders(model, enabled=False)  # their PyNative-only `mindspore.jit` pieces: the graphs hold them
        if args.gradient_checkpointing:
            recompute_layers(getattr(model, "backbone", model))
        self.optimizer = build_optimizer(params, args)
        self.reduction = Reduction([p.shape for p in params.values()], parallel.world_size,
                                   loss_scaler.kind != "none")
        self.optimizer_update = OptimizerUpdate(self.optimizer, args.max_grad_norm)
        self.accumulation = None if args.gradient_accumulation_steps == 1 else \
            Accumulation(params, self.reduction, self.optimizer_update)
        self.step_graphs, self.forward_graphs = {}, {}  # by input column names
        self.compiled = set()  # (graph, input shapes and dtypes) already compiled
        self.compile_seconds = {}  # label of each compiled graph → seconds its compilation took

    # ---- training -------------------------------------------------------------------------------
    def train_step(self, micro_batches: list, seeds: list, lr: float) -> StepResult:
        if self.accumulation is None:
            (batch,), (seed,) = micro_batches, seeds
            return self._whole_step(batch, seed, lr)
        for batch, seed in zip(micro_batches, seeds, strict=True):
            columns, inputs = self._micro_batch(batch, seed)
            names = tuple(columns)
            if names not in self.step_graphs:
                loss = ScaledLoss(ModelCall(self.model, names), self.args.gradient_accumulation_steps)
                self.step_graphs[names] = Accumulate(loss, list(self.params.values()),
                                                     self.accumulation.accumulators, self.accumulation.loss_sum)
            self._launch(self.step_graphs[names], f"train step graph ({describe(columns)})", *inputs, training=True)
        loss_sum, norm = self._launch(self.accumulation.reduce, "gradient reduction graph", self._inverse_scale())
        step_loss = float(loss_sum.asnumpy()) / self.loss_scaler.loss_scale
        grad_norm = float(norm.asnumpy())
        finite = math.isfinite(step_loss) and math.isfinite(grad_norm)
        if not finite and not self.loss_scaler.skips_non_finite:
            self._launch(self.accumulation.clear, "gradient clearing graph")
            return StepResult(step_loss, grad_norm, applied=False)
        self.loss_scaler.update(finite)
        if finite:
            scalars = [Tensor(value, mindspore.float32) for value in self.optimizer.advance(lr)]
            self._launch(self.accumulation.update, "optimizer update graph", norm, *scalars)
        else:  # an fp16 overflow: skipped, as GradScaler skips it
            self._launch(self.accumulation.clear, "gradient clearing graph")
        return StepResult(step_loss, grad_norm, applied=finite)

    def _whole_step(self, batch: dict, seed: int, lr: float) -> StepResult:
        """The step in one graph, which applies the update only if the step is finite; the optimizer's step
        count moves only then."""
        columns, inputs = self._micro_batch(batch, seed)
        names = tuple(columns)
        if names not in self.step_graphs:
            loss = ScaledLoss(ModelCall(self.model, names), 1)
            self.step_graphs[names] = Step(loss, list(self.params.values()), self.reduction, self.optimizer_update)
        scale = self.loss_scaler.loss_scale
        scalars = [Tensor(value, mindspore.float32)
                   for value in self.optimizer.kernel_scalars(lr, self.optimizer.step_count + 1)]
        loss, norm, finite = self._launch(self.step_graphs[names], f"train step graph ({describe(columns)})",
                                          self._inverse_scale(), *scalars, *inputs, training=True)
        applied = bool(finite.asnumpy())
        if applied:
            self.optimizer.step_count += 1
        if applied or self.loss_scaler.skips_non_finite:  # a non-finite step without a scaler ends the run
            self.loss_scaler.update(applied)
        return StepResult(float(loss.asnumpy()) / scale, float(norm.asnumpy()), applied=applied)

    def _inverse_scale(self) -> Tensor:
        return Tensor(1.0 / self.loss_scaler.loss_scale, mindspore.float32)

    def _micro_batch(self, global_batch: dict, seed: int) -> tuple:
        """(padded columns, graph inputs) of this worker's shard of a global micro-batch: the dropout key, the
        shard's share of the batch (so that the sum over workers is the whole batch's loss and gradient), the
        loss scale and the columns padded to the per-device batch size."""
        per_device = self.args.per_device_train_batch_size
        shard, share = worker_shard(self.parallel, self.model, global_batch, per_device)
        inputs = pad_rows(shard, per_device)
        dropout_key = Tensor(step_key(self.args.seed, seed, self.parallel.rank))
        return inputs, [dropout_key, Tensor(share, mindspore.float32),
                               Tensor(self.loss_scaler.loss_scale, mindspore.float32), *to_tensors(inputs)]

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
        return (None if isinstance(loss, tuple) else float(loss.asnumpy())), outputs

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
            graph.set_jit_config(jit_config())  # the process's --jit_level
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
