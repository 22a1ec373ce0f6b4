"""`EagerSteps`: the step engine (see steps.py) that runs op by op in PyNative through mindnlp's modules.

Gradients come from `mindspore.value_and_grad` over the trainable parameters only. Under msrun each worker
computes the loss and gradients of its shard of every global batch, weighted by the shard's share of it,
so one all-reduce of their sum gives every worker the gradients of the whole batch. Under fp16 the loss is
scaled before the backward pass and the gradients unscaled after the all-reduce.
"""

import math

import mindspore
import numpy as np
from mindspore import ops

from ..backend import seed_step, torch
from .optim import build_optimizer, clip_by_global_norm, global_norm
from .steps import StepResult, worker_shard


class EagerSteps:
    def __init__(self, model, params: dict, args, loss_scaler, parallel):
        if args.gradient_checkpointing:
            raise ValueError("gradient_checkpointing=True: recomputation is MindSpore's Cell.recompute, which "
                             "compiled graphs apply; use the graph backend (--backend graph: bert, roberta, gpt2, "
                             "llama, qwen2), or a smaller per_device_train_batch_size with "
                             "gradient_accumulation_steps")
        self.model, self.params, self.args = model, params, args
        self.loss_scaler, self.parallel = loss_scaler, parallel
        self.optimizer = build_optimizer(params, args)
        self.grad_fn = mindspore.value_and_grad(self._scaled_loss, None, list(params.values()))

    # ---- training -------------------------------------------------------------------------------
    def train_step(self, micro_batches: list, seeds: list, lr: float) -> StepResult:
        self.model.set_train(True)
        loss, grads = self._accumulate(micro_batches, seeds)
        loss, grads = self._sum_over_workers(loss, grads)
        grads = self.loss_scaler.unscale(grads)  # clipping and the optimizer see the true gradients
        norm = global_norm(grads)
        grad_norm = float(norm.asnumpy())
        step_loss = float(loss.asnumpy()) / self.loss_scaler.loss_scale
        finite = math.isfinite(step_loss) and math.isfinite(grad_norm)
        if not finite and not self.loss_scaler.skips_non_finite:
            return StepResult(step_loss, grad_norm, applied=False)
        self.loss_scaler.update(finite)
        if finite:
            if self.args.max_grad_norm and self.args.max_grad_norm > 0:
                grads = clip_by_global_norm(grads, self.args.max_grad_norm, norm)
            self.optimizer.step(grads, lr)
        return StepResult(step_loss, grad_norm, applied=finite)

    def _scaled_loss(self, **inputs):
        loss, _ = self.model(**inputs)
        return self.loss_scaler.scale(loss / self.args.gradient_accumulation_steps)

    def _accumulate(self, micro_batches: list, seeds: list):
        """This worker's summed loss and gradients over the micro-batches (name → gradient)."""
        loss, grads = None, None
        for batch, seed in zip(micro_batches, seeds, strict=True):
            seed_step(self.args.seed, seed, worker=self.parallel.rank)
            micro_loss, micro_grads = self._shard_gradients(batch)
            if grads is None:
                loss, grads = micro_loss, dict(zip(self.params, micro_grads))
            else:
                loss = ops.add(loss, micro_loss)
                grads = {name: ops.add(grads[name], grad) for name, grad in zip(self.params, micro_grads)}
        return loss, grads

    def _shard_gradients(self, global_batch: dict):
        """Loss and gradients of this worker's shard of a global batch, weighted by the shard's share of it,
        so that their sum over the workers is the loss and gradient of the whole batch."""
        shard, weight = worker_shard(self.parallel, self.model, global_batch, self.args.per_device_train_batch_size)
        loss, grads = self.grad_fn(**to_inputs(shard))
        if self.parallel.world_size == 1:  # the whole batch: weight 1, left out to keep the numbers as they were
            return loss, list(grads)
        return ops.mul(loss, weight), [ops.mul(grad, weight) for grad in grads]

    def _sum_over_workers(self, loss, grads: dict):
        """The global batch's loss and gradients from every worker's weighted share (one all-reduce)."""
        if self.parallel.world_size == 1:
            return loss, grads
        *summed, loss = self.parallel.sum_tensors(list(grads.values()) + [ops.reshape(loss, (1,))])
        return ops.reshape(loss, ()), dict(zip(grads, summed))

    # ---- evaluation and state -------------------------------------------------------------------
    def eval_step(self, batch: dict):
        self.model.set_train(False)
        loss, output = self.model(**to_inputs(batch))
        outputs = tuple(o.asnumpy() for o in output) if isinstance(output, tuple) else output.asnumpy()
        return (None if loss is None else float(loss.asnumpy())), outputs

    def optimizer_state(self) -> dict:
        return self.optimizer.state_arrays()

    def load_optimizer_state(self, arrays: dict) -> None:
        self.optimizer.load_state_arrays(arrays)


def to_inputs(batch: dict) -> dict:
    """numpy columns → the tensors the model's modules take."""
    return {name: torch.tensor(np.asarray(values)) for name, values in batch.items()}
