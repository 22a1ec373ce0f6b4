"""The training loop: AdamW + HF schedules + clipping + accumulation + evaluation + checkpoints.

Takes Hugging Face `TrainingArguments` (the names users know) and runs a loop you can read top to bottom.
Gradients come from `mindspore.value_and_grad` over the trainable parameters only. Everything random in
a step is a pure function of (seed, data position): the epoch order comes from (seed, epoch), dropout is
reseeded from (seed, epoch, batch), so resuming from a checkpoint continues the very same run; a resume
is refused when the checkpoint's run config (RUN_ARGUMENTS, the PTuningConfig, the train data, the number
of data-parallel workers) differs. Under msrun (ms_ptuning.distributed) each worker computes its shard of
every global batch, gradients are summed in one all-reduce per optimizer step, evaluation is split over
the workers and gathered, and only rank 0 writes files. Under fp16 (training.precision) the loss is scaled
before the backward pass and the gradients unscaled after the all-reduce; a dynamic scaler skips a step
whose gradients overflowed instead of stopping the run.
"""

import hashlib
import json
import math
import os
import shutil
import time
from functools import cached_property

import mindspore
import numpy as np
from mindspore import ops
from tqdm.auto import tqdm

from ..adapters import load_adapter, save_adapter
from ..backend import seed_step, torch
from ..data.dataset import batch_indices, concatenate_rows, epoch_order
from ..distributed import DataParallel, launched_by_msrun
from ..weights import assign_weights, to_numpy, trainable_weights
from .checkpoint import (discard, latest_checkpoint, list_checkpoints, load_checkpoint, prune_checkpoints,
                         remove_leftovers, save_checkpoint)
from .optim import AdamW, clip_by_global_norm, global_norm
from .plots import plot_curves
from .precision import LossScaler
from .schedules import epoch_decay_fn, lr_factor_fn

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
BEST_DIR = "best_model"
# TrainingArguments that change the weights a run produces (absent ones read as None); a resume must match them
RUN_ARGUMENTS = ("seed", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "num_train_epochs", "max_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio",
                 "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
                 "dataloader_drop_last", "lr_decay_per_epoch", "mixed_precision")


class NonFiniteLossError(FloatingPointError):
    """Loss or gradient norm became NaN/Inf; the step was not applied."""


class Trainer:
    """`model(**batch) -> (loss, outputs)`; datasets are `ArrayDataset`s whose columns are the model's
    keyword arguments plus `metadata_columns` (kept for metrics, never fed to the model)."""

    def __init__(self, model, args, train_dataset=None, eval_dataset=None, compute_metrics=None,
                 metadata_columns=(), adapter_metadata=None, parallel: DataParallel | None = None,
                 loss_scaler: LossScaler | None = None):
        self.model, self.args = model, args
        if parallel is None and launched_by_msrun():  # N independent runs writing to one output_dir
            raise RuntimeError("launched by msrun, but this entry point trains in one process; data-parallel "
                               "training goes through ms_ptuning.run (scripts/run_distributed.sh)")
        self.parallel = parallel or DataParallel()
        self.loss_scaler = loss_scaler or LossScaler("none")
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.compute_metrics = compute_metrics
        self.metadata_columns = set(metadata_columns)
        self.adapter_metadata = adapter_metadata or {}
        check_dataset = getattr(model, "check_dataset", None)
        for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
            if check_dataset is not None and dataset is not None:
                check_dataset(dataset, source=f"{split} dataset")
        self.params = trainable_weights(model)
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.optimizer = AdamW(self.params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                               eps=args.adam_epsilon, weight_decay=args.weight_decay)
        self.grad_fn = mindspore.value_and_grad(self._scaled_loss, None, list(self.params.values()))
        self.global_step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_metric, self.best_step = None, None
        self.last_evaluation = None  # (global step, metrics) of the latest in-training evaluation

    # ---- one forward/backward -------------------------------------------------------------------
    def _scaled_loss(self, **inputs):
        loss, _ = self.model(**inputs)
        return self.loss_scaler.scale(loss / self.args.gradient_accumulation_steps)

    def _to_inputs(self, batch: dict) -> dict:
        return {name: torch.tensor(values) for name, values in batch.items() if name not in self.metadata_columns}

    def _shard_gradients(self, global_batch: np.ndarray):
        """Loss and gradients of this worker's shard of a global batch, weighted by the shard's share of it,
        so that their sum over the workers is the loss and gradient of the whole batch."""
        shard = self.parallel.shard(global_batch, self.args.per_device_train_batch_size)
        weight = len(shard) / len(global_batch)
        if len(shard) == 0:  # a short last batch left this worker nothing: same shapes, zero weight
            shard = global_batch[:1]
        loss, grads = self.grad_fn(**self._to_inputs(self.train_dataset.batch(shard)))
        if self.parallel.world_size == 1:  # the whole batch: weight 1, left out to keep the numbers as they were
            return loss, list(grads)
        return ops.mul(loss, weight), [ops.mul(grad, weight) for grad in grads]

    def _sum_over_workers(self, loss, grads: dict):
        """The global batch's loss and gradients from every worker's weighted share (one all-reduce)."""
        if self.parallel.world_size == 1:
            return loss, grads
        *summed, loss = self.parallel.sum_tensors(list(grads.values()) + [ops.reshape(loss, (1,))])
        return ops.reshape(loss, ()), dict(zip(grads, summed))

    def _broadcast_weights(self) -> None:
        """Start every worker from rank 0's trainable weights (seeded inits agree; this makes sure)."""
        if self.parallel.world_size == 1:
            return
        values = self.parallel.broadcast_from_main(list(self.params.values()))
        for param, value in zip(self.params.values(), values):
            ops.assign(param, value)

    # ---- bookkeeping ----------------------------------------------------------------------------
    @property
    def output_dir(self) -> str:
        return self.args.output_dir

    def _log(self, record: dict) -> None:
        if not self.parallel.is_main:
            return
        with open(os.path.join(self.output_dir, METRICS_FILE), "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def best_metric_name(self) -> str:
        name = self.args.metric_for_best_model or "loss"
        return name if name.startswith("eval_") else f"eval_{name}"

    def _greater_is_better(self) -> bool:
        if self.args.greater_is_better is not None:
            return self.args.greater_is_better
        return not self.best_metric_name().endswith("loss")

    def _holds_a_run(self) -> bool:
        return os.path.exists(os.path.join(self.output_dir, METRICS_FILE)) or bool(list_checkpoints(self.output_dir))

    def _prepare_output_dir(self, resuming: bool) -> None:
        replacing = self._holds_a_run() and not resuming
        if replacing and not self.args.overwrite_output_dir:
            raise FileExistsError(f"{self.output_dir} already holds a run (metrics/checkpoints); pass "
                                  "--overwrite_output_dir to replace it or --resume to continue it")
        if not self.parallel.is_main:  # every worker checks, rank 0 alone changes files
            return
        if replacing:
            for path in list_checkpoints(self.output_dir):
                discard(path)
            shutil.rmtree(os.path.join(self.output_dir, BEST_DIR), ignore_errors=True)
            for name in (METRICS_FILE, CURVES_FILE):
                if os.path.exists(os.path.join(self.output_dir, name)):
                    os.remove(os.path.join(self.output_dir, name))
        if not resuming:  # a resume removes them once the checkpoint is accepted
            remove_leftovers(self.output_dir)
        os.makedirs(self.output_dir, exist_ok=True)

    @cached_property
    def run_config(self) -> dict:
        """What makes this run this run (JSON values): a resume from a checkpoint whose config differs is
        refused. Cached: hashing the train data once is enough."""
        model_config = getattr(self.model, "config", None)
        config = {"training_arguments": {name: getattr(self.args, name, None) for name in RUN_ARGUMENTS},
                  "ptuning_config": model_config.to_dict() if hasattr(model_config, "to_dict") else None,
                  "train_dataset": dataset_fingerprint(self.train_dataset, self.metadata_columns),
                  "data_parallel": {"workers": self.parallel.world_size},
                  "loss_scaling": {"kind": self.loss_scaler.kind}}
        return json_value(config)

    def _state(self) -> dict:
        return {"global_step": self.global_step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_metric": self.best_metric, "best_step": self.best_step, "seed": self.args.seed,
                "metric_for_best_model": self.best_metric_name(), "config": self.run_config,
                "loss_scaler": self.loss_scaler.state_dict()}

    def save_checkpoint(self) -> str | None:
        if not self.parallel.is_main:
            return None
        trainable = to_numpy(self.params)
        broken = [name for name, array in trainable.items() if not np.isfinite(array).all()]
        if broken:  # an update overflowed; saving would turn the last good checkpoint into a bad one
            raise NonFiniteLossError(f"step {self.global_step}: weights {broken[:5]} became NaN/Inf; not saved. "
                                     f"Last good checkpoint: {latest_checkpoint(self.output_dir)}")
        path = save_checkpoint(self.output_dir, self.global_step, trainable,
                               self.optimizer.state_arrays(), self._state())
        prune_checkpoints(self.output_dir, self.args.save_total_limit)
        return path

    def _resume(self, checkpoint: str) -> None:
        """Check everything first (config, names, shapes, dtypes), then load, then cut the metrics log back
        to the checkpoint's step, so a refused resume changes nothing."""
        trainable, optimizer, state = load_checkpoint(checkpoint)
        saved = state.get("config") or {"training_arguments": {"seed": state["seed"]}}  # older checkpoints
        differences = config_differences(saved, self.run_config)
        if differences:
            raise ValueError(f"cannot resume from {checkpoint}: it was written by a run with other settings "
                             f"({'; '.join(differences)}). An exact resume needs the checkpoint's settings; "
                             "to start a new run use another --output_dir or --overwrite_output_dir")
        if set(trainable) != set(self.params):
            raise ValueError(f"cannot resume from {checkpoint}: its trainable weights differ from the model's "
                             f"(missing {sorted(set(self.params) - set(trainable))[:10]}, "
                             f"unexpected {sorted(set(trainable) - set(self.params))[:10]})")
        assign_weights(self.model, trainable, strict=False, source=checkpoint)
        self.optimizer.load_state_arrays(optimizer)
        self.global_step, self.epoch, self.batch_in_epoch = (state["global_step"], state["epoch"],
                                                             state["batch_in_epoch"])
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        if "loss_scaler" in state:  # older checkpoints ran unscaled
            self.loss_scaler.load_state_dict(state["loss_scaler"])
        if self.parallel.is_main:
            self._truncate_log(self.global_step)
            remove_leftovers(self.output_dir)

    def _truncate_log(self, step: int) -> None:
        """Drop the records of steps after `step` (written by the run before it was killed; the resumed run
        writes them again) and a last line the kill cut short."""
        path = os.path.join(self.output_dir, METRICS_FILE)
        if not os.path.exists(path):
            return
        with open(path) as handle:
            lines = [line for line in handle if line.endswith("\n")]
        kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
        with open(path + ".tmp", "w") as handle:
            handle.writelines(kept)
        os.replace(path + ".tmp", path)

    # ---- training -------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None) -> dict:
        """`resume_from_checkpoint`: a checkpoint directory, or True for the latest one in output_dir."""
        args = self.args
        if resume_from_checkpoint is True:
            resume_from_checkpoint = latest_checkpoint(self.output_dir)
            if resume_from_checkpoint is None and self._holds_a_run() and not args.overwrite_output_dir:
                raise FileNotFoundError(f"nothing to resume: {self.output_dir} holds a run but no complete "
                                        "checkpoint-<step> (it stopped before its first save); pass "
                                        "--overwrite_output_dir to start it again")
        self._prepare_output_dir(resuming=bool(resume_from_checkpoint))
        if resume_from_checkpoint:
            self._resume(resume_from_checkpoint)
        self._broadcast_weights()

        num_batches = self._batches_per_epoch()
        steps_per_epoch = math.ceil(num_batches / args.gradient_accumulation_steps)
        total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
        num_epochs = math.ceil(total_steps / steps_per_epoch)
        lr_factor = lr_factor_fn(args.lr_scheduler_type, args.get_warmup_steps(total_steps), total_steps,
                                 args.learning_rate, **(args.lr_scheduler_kwargs or {}))
        if getattr(args, "lr_decay_per_epoch", None):
            lr_factor = epoch_decay_fn(args.lr_decay_per_epoch, steps_per_epoch)

        self.model.set_train(True)
        progress = tqdm(total=total_steps, initial=self.global_step, desc="train",
                        disable=args.disable_tqdm or not self.parallel.is_main)
        started, first_step = time.time(), self.global_step
        step_losses, grad_norm, lr = [], float("nan"), 0.0
        accumulated, accumulated_loss, micro = None, None, 0
        while self.global_step < total_steps and self.epoch < num_epochs:
            order = epoch_order(len(self.train_dataset), args.seed, self.epoch)
            batches = batch_indices(order, self._global_batch_size(), drop_last=args.dataloader_drop_last)
            while self.batch_in_epoch < len(batches) and self.global_step < total_steps:
                seed_step(args.seed, self.epoch * 1_000_003 + self.batch_in_epoch, worker=self.parallel.rank)
                loss, grads = self._shard_gradients(batches[self.batch_in_epoch])
                grads = dict(zip(self.params, grads))
                accumulated = grads if accumulated is None else {n: ops.add(accumulated[n], g) for n, g in grads.items()}
                accumulated_loss = loss if accumulated_loss is None else ops.add(accumulated_loss, loss)
                self.batch_in_epoch += 1
                micro += 1
                if micro < args.gradient_accumulation_steps and self.batch_in_epoch < len(batches):
                    continue
                accumulated_loss, accumulated = self._sum_over_workers(accumulated_loss, accumulated)
                accumulated = self.loss_scaler.unscale(accumulated)  # clipping and AdamW see the true gradients
                norm = global_norm(accumulated)
                grad_norm = float(norm.asnumpy())
                step_loss = float(accumulated_loss.asnumpy()) / self.loss_scaler.loss_scale
                finite = math.isfinite(step_loss) and math.isfinite(grad_norm)
                if not finite and not self.loss_scaler.skips_non_finite:
                    last = latest_checkpoint(self.output_dir)
                    raise NonFiniteLossError(f"step {self.global_step + 1}: loss={step_loss} grad_norm={grad_norm}; "
                                             f"training stopped before applying it. Last good checkpoint: {last}")
                self.loss_scaler.update(finite)
                lr = args.learning_rate * lr_factor(self.global_step)
                if finite:  # a skipped fp16 overflow still uses up its batches and schedule step, as in HF
                    if args.max_grad_norm and args.max_grad_norm > 0:
                        accumulated = clip_by_global_norm(accumulated, args.max_grad_norm, norm)
                    self.optimizer.step(accumulated, lr)
                    step_losses.append(step_loss)
                self.global_step += 1
                accumulated, accumulated_loss, micro = None, None, 0
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}")
                end_of_epoch = self.batch_in_epoch == len(batches)
                if end_of_epoch:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self._after_step(step_loss, grad_norm, lr, end_of_epoch=end_of_epoch, skipped=not finite)
                if end_of_epoch:
                    break  # the next epoch draws its own order (the loop above), as a resumed run does
            if self.batch_in_epoch == len(batches):  # a max_steps stop exactly at an epoch's end
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        progress.close()

        if args.load_best_model_at_end and self.best_step is not None:
            self._load_best()
        runtime = time.time() - started
        mean_loss = float(np.mean(step_losses)) if step_losses else float("nan")
        return {"global_step": self.global_step, "train_loss": mean_loss, "train_runtime": runtime,
                "train_steps_per_second": (self.global_step - first_step) / runtime if runtime else 0.0,
                "best_metric": self.best_metric, "best_step": self.best_step}

    def _after_step(self, loss: float, grad_norm: float, lr: float, end_of_epoch: bool, skipped: bool) -> None:
        args = self.args
        fractional_epoch = self.epoch + (self.batch_in_epoch / max(1, self._batches_per_epoch()))
        if skipped or (args.logging_steps and self.global_step % max(1, int(args.logging_steps)) == 0):
            record = {"step": self.global_step, "epoch": round(fractional_epoch, 4), "learning_rate": lr}
            record.update({"skipped": True} if skipped else {"loss": loss, "grad_norm": grad_norm})
            if self.loss_scaler.kind != "none":
                record["loss_scale"] = self.loss_scaler.loss_scale
            self._log(record)
        evaluate_now = self.eval_dataset is not None and (
            (args.eval_strategy == "epoch" and end_of_epoch)
            or (args.eval_strategy == "steps" and self.global_step % max(1, int(args.eval_steps or 1)) == 0))
        if evaluate_now:
            metrics = self.evaluate()
            self.last_evaluation = (self.global_step, metrics)
            self._log({"step": self.global_step, "epoch": round(fractional_epoch, 4), **metrics})
            self._track_best(metrics)
            if self.parallel.is_main:
                plot_curves(os.path.join(self.output_dir, METRICS_FILE), os.path.join(self.output_dir, CURVES_FILE),
                            self.best_metric_name() if self.best_metric_name() != "eval_loss" else None)
            self.model.set_train(True)
        save_now = ((args.save_strategy == "epoch" and end_of_epoch)
                    or (args.save_strategy == "steps" and self.global_step % max(1, int(args.save_steps)) == 0))
        if save_now:
            self.save_checkpoint()

    def _global_batch_size(self) -> int:
        return self.args.per_device_train_batch_size * self.parallel.world_size

    def _batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_dataset) / self._global_batch_size())

    def _track_best(self, metrics: dict) -> None:
        name = self.best_metric_name()
        if name not in metrics:
            raise KeyError(f"metric_for_best_model {name!r} is not among the evaluation metrics {sorted(metrics)}")
        value = metrics[name]
        better = self.best_metric is None or (value > self.best_metric if self._greater_is_better()
                                              else value < self.best_metric)
        if better:
            self.best_metric, self.best_step = value, self.global_step
            if self.parallel.is_main:
                save_adapter(self.model, os.path.join(self.output_dir, BEST_DIR),
                             best_step=self.global_step, **{name: value}, **self.adapter_metadata)

    def _load_best(self) -> None:
        self.parallel.barrier()  # rank 0 may have written best_model/ just now
        load_adapter(self.model, os.path.join(self.output_dir, BEST_DIR))

    # ---- inference ------------------------------------------------------------------------------
    def _run(self, dataset):
        """Eval-mode pass in dataset order → (mean loss or None, predictions as numpy / tuple of numpy).
        With several workers each runs a contiguous share of the rows and all get the whole result."""
        self.model.set_train(False)
        start, stop = self.parallel.row_range(len(dataset))
        rows = np.arange(start, stop) if stop > start else np.arange(1)  # an empty share still yields shapes
        loss_sum, loss_rows, outputs = 0.0, 0, []
        for indices in batch_indices(rows, self.args.per_device_eval_batch_size):
            loss, output = self.model(**self._to_inputs(dataset.batch(indices)))
            if loss is not None:
                loss_sum += float(loss.asnumpy()) * len(indices)
                loss_rows += len(indices)
            outputs.append(tuple(o.asnumpy() for o in output) if isinstance(output, tuple) else output.asnumpy())
        several_outputs = isinstance(outputs[0], tuple)
        # a per-batch padded dataset gives outputs of several widths: padded with -100 to its full width,
        # which every worker shares (so the rows can be gathered)
        width = dataset.sequence_width
        parts = [concatenate_rows(list(part), width) for part in zip(*outputs)] if several_outputs else [
            concatenate_rows(outputs, width)]
        if stop == start:
            parts, loss_sum, loss_rows = [part[:0] for part in parts], 0.0, 0
        parts = [self.parallel.gather_rows(part, start, len(dataset)) for part in parts]
        predictions = tuple(parts) if several_outputs else parts[0]
        if loss is None:
            return None, predictions
        loss_sum, loss_rows = self.parallel.sum_arrays([np.array([loss_sum, loss_rows], np.float64)])[0]
        return loss_sum / loss_rows, predictions

    def evaluate(self, dataset=None, prefix: str = "eval") -> dict:
        dataset = dataset if dataset is not None else self.eval_dataset
        loss, predictions = self._run(dataset)
        metrics = self.compute_metrics(predictions, dataset) if self.compute_metrics else {}
        if loss is not None:
            metrics["loss"] = loss
        return {f"{prefix}_{name}": value for name, value in metrics.items()}

    def predict(self, dataset):
        return self._run(dataset)[1]


def dataset_fingerprint(dataset, skip=()) -> dict | None:
    """Size and sha256 of the model-input columns (numeric; object columns are bookkeeping)."""
    if dataset is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(dataset.columns):
        values = dataset.columns[name]
        if name in skip or values.dtype == object:
            continue
        digest.update(f"{name}|{values.dtype.str}|{values.shape}".encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return {"examples": len(dataset), "sha256": digest.hexdigest()}


def json_value(value):
    """`value` as it reads back from JSON (enums → strings, tuples → lists), so saved and current compare."""
    return json.loads(json.dumps(value, default=str))


def config_differences(saved: dict, current: dict) -> list:
    """"name: saved → current" for every field the saved config has that differs now."""
    differences = []
    for section, fields in saved.items():
        now = current.get(section) or {}
        prefix = "" if section == "training_arguments" else f"{section}."
        for name, value in (fields or {}).items():
            if now.get(name) != value:
                differences.append(f"{prefix}{name}: {value!r} → {now.get(name)!r}")
    return differences
