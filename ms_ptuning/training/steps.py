"""The step engine interface: what the Trainer asks of whatever computes a training or evaluation step.

The Trainer owns the loop (data order, callbacks, logging, checkpoints); a step engine owns the numbers:

    Steps(model, params, args, loss_scaler, parallel)
      train_step(micro_batches, seeds, lr) -> StepResult
          One optimizer step over the accumulation micro-batches. Each micro-batch is a *global* batch (a dict
          of numpy model inputs, metadata already removed) that the engine shards with `parallel`; seeds[i]
          fixes micro-batch i's dropout (`backend.seed_step(args.seed, seeds[i], worker=rank)`). Each
          micro-batch's loss is divided by args.gradient_accumulation_steps (the rule of THUDM's
          transformers 4.11), the gradients of the trainable `params` summed, all-reduced, unscaled,
          checked for Inf/NaN, clipped to args.max_grad_norm and applied by torch's AdamW; the loss scaler
          is updated. A non-finite step is never applied (`applied=False`): without a dynamic scaler the
          Trainer stops the run, with one it logs a skipped step.
      eval_step(batch) -> (loss or None, outputs)
          Eval-mode forward of one batch: the batch's mean loss as a float (None without labels) and the
          outputs as numpy (a tuple of arrays for multi-output heads).
      optimizer_state() -> dict[str, np.ndarray]  /  load_optimizer_state(arrays)
          AdamW's state as `exp_avg.<name>`, `exp_avg_sq.<name>` and `step`, the checkpoint format.

`EagerSteps` (eager_steps.py) runs op by op in PyNative; a compiled engine plugs in through the Trainer's
`steps=` argument (a class or factory with the constructor above).
"""

from dataclasses import dataclass


def shard_share(model, shard: dict, global_batch: dict) -> float:
    """What one worker's shard weighs in its global batch's loss, so that the weighted shard losses sum, over
    the workers, to the loss of the whole batch: its share of the rows for a loss that averages over rows, or
    of the counted tokens when the model says its loss averages over tokens (`loss_weight(batch)`, the causal
    LM's labelled next tokens: a row-weighted mean of per-shard token means is not the global token mean)."""
    weigh = getattr(model, "loss_weight", None) or (lambda batch: len(next(iter(batch.values()))))
    total = weigh(global_batch)
    return weigh(shard) / total if total else 0.0


def worker_shard(parallel, model, global_batch: dict, per_device: int) -> tuple:
    """(this worker's rows of a global batch, their weight in its loss, `shard_share`). A short last batch
    that left this worker nothing gives it the batch's first row with weight 0: real rows and the same
    shapes, contributing nothing to the sum over the workers."""
    shard = {name: parallel.shard(values, per_device) for name, values in global_batch.items()}
    share = shard_share(model, shard, global_batch)
    if len(next(iter(shard.values()))) == 0:
        shard = {name: values[:1] for name, values in global_batch.items()}
    return shard, share


@dataclass(frozen=True)
class StepResult:
    loss: float  # the step's training loss (unscaled), summed over its micro-batches
    grad_norm: float  # global norm of the unscaled gradients, before clipping
    applied: bool  # False: Inf/NaN loss or gradients, the weights and AdamW state are unchanged
