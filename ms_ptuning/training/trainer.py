"""The training loop, with Hugging Face's Trainer contract, on a step engine.

    for each epoch:                                     (order: a function of (data seed, epoch))
        for each optimizer step:                        (gradient_accumulation_steps micro-batches)
            engine.train_step(micro-batches)            forward, backward, accumulate, clip, AdamW
            on_step_end → log / evaluate / save         (HF's DefaultFlowCallback decides which)
        on_epoch_end → log / evaluate / save

The numbers come from a step engine (steps.py: `EagerSteps` by default, another through `steps=`). The loop
keeps HF's contract: `Trainer(model, args, data_collator, train_dataset, eval_dataset, ...,
compute_metrics, callbacks)`, transformers' callbacks with a real `TrainerState`/`TrainerControl`,
`train()` → `TrainOutput`, `evaluate()` → dict, `predict()` → `PredictionOutput`, `save_model()`, and a
`trainer_state.json` in every checkpoint. ms_ptuning's additions: `test_datasets` (scored at every new best
dev metric: THUDM's evaluation protocol), `DatasetMetrics` for task metrics that read metadata columns,
`best_model/` (the best dev adapter), `metrics.jsonl` + `curves.png`, data parallelism (`parallel`) and
fp16 loss scaling (`loss_scaler`).

Everything random in a step is a pure function of (seed, data position): the epoch order comes from
(data seed, epoch), dropout is reseeded from (seed, epoch, batch), so resuming from a checkpoint continues
the very same run; a resume is refused when the checkpoint's run config (RUN_ARGUMENTS, the PTuningConfig,
the train data, the number of data-parallel workers) differs. Only rank 0 writes files.
"""

import dataclasses
import json
import os
import shutil
import time
from functools import cached_property

import numpy as np
from mindspore import ops
from transformers import EvalPrediction, TrainerControl, TrainerState
from transformers.trainer_callback import CallbackHandler
from transformers.trainer_utils import PredictionOutput, TrainOutput, speed_metrics
from transformers.utils import logging as hf_logging

from ..adapters import load_adapter, save_adapter
from ..data.dataset import batch_indices, concatenate_rows, epoch_order
from ..distributed import DataParallel, launched_by_msrun
from ..weights import assign_weights, to_numpy, trainable_weights
from .arguments import check_arguments
from .callbacks import (callback_states, check_callbacks, default_callbacks, progress_callback,
                        restore_callback_states)
from .checkpoint import (TRAINER_STATE_FILE, discard, latest_checkpoint, list_checkpoints, load_checkpoint,
                         prune_checkpoints, remove_leftovers, save_checkpoint)
from .eager_steps import EagerSteps
from .evaluation import DatasetMetrics, prefixed
from .inputs import CollatedDataset, as_dataset, dataset_fingerprint, default_label_names, model_input_names
from .plots import plot_curves
from .precision import LossScaler
from .training_plan import TrainingPlan

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"
BEST_DIR = "best_model"
# TrainingArguments that change the weights a run produces (absent ones read as None); a resume must match them
RUN_ARGUMENTS = ("seed", "data_seed", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "num_train_epochs", "max_steps", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_ratio",
                 "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
                 "dataloader_drop_last", "lr_decay_per_epoch", "mixed_precision", "optim", "ties_are_improvements")
UNSUPPORTED_CONSTRUCTOR_ARGUMENTS = {
    "model_init": "build the model yourself and pass it (no hyperparameter search here)",
    "compute_loss_func": "the heads compute their own loss",
    "optimizer_cls_and_kwargs": "the step engine runs torch's AdamW from the TrainingArguments",
}


class NonFiniteLossError(FloatingPointError):
    """Loss or gradient norm became NaN/Inf; the step was not applied."""


class Trainer:
    """`model(**inputs) -> (loss or None, outputs)`; HF's arguments first, ms_ptuning's after the `*`."""

    def __init__(self, model, args, data_collator=None, train_dataset=None, eval_dataset=None, processing_class=None,
                 model_init=None, compute_loss_func=None, compute_metrics=None, callbacks=None,
                 optimizers=(None, None), optimizer_cls_and_kwargs=None, preprocess_logits_for_metrics=None, *,
                 test_datasets=None, metadata_columns=(), adapter_metadata=None,
                 parallel: DataParallel | None = None, loss_scaler: LossScaler | None = None, steps=None):
        refuse_constructor_arguments(data_collator, model_init=model_init, compute_loss_func=compute_loss_func,
                                     optimizer_cls_and_kwargs=optimizer_cls_and_kwargs, optimizers=optimizers)
        check_arguments(args)
        check_callbacks(args, list(callbacks or []))
        if parallel is None and launched_by_msrun():  # N independent runs writing to one output_dir
            raise RuntimeError("launched by msrun, but this entry point trains in one process; data-parallel "
                               "training goes through ms_ptuning.run or ms_ptuning.chat (scripts/run_distributed.sh)")
        self.model, self.args = model, args
        self.parallel = parallel or DataParallel()
        self.loss_scaler = loss_scaler or LossScaler("none")
        self.data_collator, self.processing_class = data_collator, processing_class
        self.compute_metrics, self.preprocess_logits_for_metrics = compute_metrics, preprocess_logits_for_metrics
        self.metadata_columns = set(metadata_columns)
        self.adapter_metadata = adapter_metadata or {}
        self.input_names = model_input_names(model)
        self.label_names = list(args.label_names or default_label_names(self.input_names))
        self.train_dataset = self._dataset(train_dataset, "train dataset")
        self.eval_dataset = self._dataset(eval_dataset, "eval dataset")
        self.test_datasets = {name: self._dataset(data, f"{name} dataset") for name, data in (test_datasets or {}).items()}
        self.params = trainable_weights(model)
        if not self.params:
            raise ValueError("the model has no trainable parameters")
        self.steps = (steps or EagerSteps)(model, self.params, args, self.loss_scaler, self.parallel)
        self.state, self.control = self._new_state(), TrainerControl()
        self.callback_handler = CallbackHandler(default_callbacks(args) + list(callbacks or []), model,
                                                processing_class, None, None)
        self.callback_handler.add_callback(progress_callback(args))
        self.run = RunState()
        self.last_evaluation = None  # (global step, metrics) of the latest evaluation
        self._writing_log = False  # metrics.jsonl is written while train() runs
        if self._log_level() >= 0:  # HF's "passive" (-1) leaves the logger as it is
            hf_logging.set_verbosity(self._log_level())
        self.control = self.callback_handler.on_init_end(args, self.state, self.control)

    def _dataset(self, dataset, source: str):
        if dataset is None:
            return None
        dataset = as_dataset(dataset, source, collated=self.data_collator is not None)
        if self.data_collator is not None:
            dataset = CollatedDataset(dataset, self.data_collator)
        check_dataset = getattr(self.model, "check_dataset", None)
        if check_dataset is not None:
            check_dataset(dataset, source=source)
        return dataset

    def _log_level(self) -> int:
        name = self.args.log_level if self.parallel.is_main else self.args.log_level_replica
        return -1 if name == "passive" else hf_logging.log_levels[name]

    def _new_state(self) -> TrainerState:
        state = TrainerState()
        state.is_local_process_zero = state.is_world_process_zero = self.parallel.is_main
        return state

    # ---- callbacks (HF's API) -------------------------------------------------------------------
    def add_callback(self, callback) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback):
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback) -> None:
        self.callback_handler.remove_callback(callback)

    def is_world_process_zero(self) -> bool:
        return self.parallel.is_main

    # ---- training -------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None) -> TrainOutput:
        """`resume_from_checkpoint`: a checkpoint directory, or True for the latest one in output_dir
        (None: `args.resume_from_checkpoint`, as a path)."""
        if trial is not None or ignore_keys_for_eval is not None:
            raise ValueError("train(): trial and ignore_keys_for_eval are not supported (no hyperparameter search; "
                             "outputs are arrays, not dicts)")
        if self.train_dataset is None:
            raise ValueError("train() needs a train_dataset")
        checkpoint = self._checkpoint_to_resume(resume_from_checkpoint or self.args.resume_from_checkpoint)
        self._prepare_output_dir(resuming=checkpoint is not None)
        plan = TrainingPlan.of(self.args, len(self.train_dataset), self.parallel.world_size)
        self._start_state(plan)
        if checkpoint is not None:
            self._resume(checkpoint, plan)
        self._broadcast_weights()
        self._writing_log, started, first_step = True, time.time(), self.state.global_step
        try:
            self.control = self.callback_handler.on_train_begin(self.args, self.state, self.control)
            if self.args.eval_on_start and self.state.global_step == 0:  # not again when resuming (unlike HF)
                self._evaluate()
            while (self.run.epoch < plan.num_epochs and self.state.global_step < plan.total_steps
                   and not self.control.should_training_stop):
                self._train_epoch(plan)
            return self._finish_training(plan, started, first_step)
        finally:
            self._writing_log = False

    def _train_epoch(self, plan) -> None:
        """One epoch (or what a resume left of it): optimizer steps, then the epoch's end."""
        batches = self._epoch_batches()
        self.callback_handler.train_dataloader = batches
        self.control = self.callback_handler.on_epoch_begin(self.args, self.state, self.control)
        while self.run.batch_in_epoch < len(batches) and self.state.global_step < plan.total_steps:
            self.control = self.callback_handler.on_step_begin(self.args, self.state, self.control)
            first = self.run.batch_in_epoch
            self.run.batch_in_epoch = min(first + self.args.gradient_accumulation_steps, len(batches))
            micro = range(first, self.run.batch_in_epoch)
            result = self._optimizer_step([self._model_inputs(self.train_dataset.batch(batches[i])) for i in micro],
                                          [self.run.epoch * 1_000_003 + i for i in micro], plan)
            self._record_step(result, len(batches))
            self.control = self.callback_handler.on_step_end(self.args, self.state, self.control)
            self._maybe_log_save_evaluate()
            if self.control.should_epoch_stop or self.control.should_training_stop:
                break
        self.run.epoch, self.run.batch_in_epoch = self.run.epoch + 1, 0  # the end of an epoch, handled once
        self.control = self.callback_handler.on_epoch_end(self.args, self.state, self.control)
        self._maybe_log_save_evaluate()

    def _epoch_batches(self) -> list:
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        order = epoch_order(len(self.train_dataset), seed, self.run.epoch)
        return batch_indices(order, self._global_batch_size(), drop_last=self.args.dataloader_drop_last)

    def _optimizer_step(self, micro_batches: list, seeds: list, plan):
        lr = self._learning_rate(plan)
        result = self.steps.train_step(micro_batches, seeds, lr)
        if not result.applied and not self.loss_scaler.skips_non_finite:
            raise NonFiniteLossError(f"step {self.state.global_step + 1}: loss={result.loss} "
                                     f"grad_norm={result.grad_norm}; training stopped before applying it. "
                                     f"Last good checkpoint: {latest_checkpoint(self.args.output_dir)}")
        self.run.last_lr = lr
        if result.applied:
            self.run.applied_steps += 1
            self.control = self.callback_handler.on_optimizer_step(self.args, self.state, self.control)
        return result

    def _learning_rate(self, plan) -> float:
        """HF schedules advance with applied steps (a skipped fp16 step does not step the scheduler, as in
        HF); --lr_decay_per_epoch is torch's ExponentialLR stepped once per epoch (THUDM's NER/SRL/QA)."""
        gamma = getattr(self.args, "lr_decay_per_epoch", None)
        if gamma is not None:
            return self.args.learning_rate * gamma ** self.run.epoch
        return self.args.learning_rate * plan.lr_factor(self.run.applied_steps)

    def _record_step(self, result, num_batches: int) -> None:
        self.state.global_step += 1
        self.state.epoch = self.run.epoch + self.run.batch_in_epoch / num_batches
        self.run.last_grad_norm = result.grad_norm
        if result.applied or not self.args.logging_nan_inf_filter:
            self.run.loss_since_log += result.loss
            self.run.steps_since_log += 1
            self.run.total_loss += result.loss
            self.run.total_steps_counted += 1
        if not result.applied:  # an fp16 overflow: logged whatever the logging interval
            self.log({"skipped": True, "learning_rate": self.run.last_lr, "loss_scale": self.loss_scaler.loss_scale})

    def _maybe_log_save_evaluate(self) -> None:
        """HF's order: log, evaluate (a new best dev metric scores the test splits), save."""
        if self.control.should_log and self.run.steps_since_log:  # a skipped step has its own record
            self._log_training()
        if self.control.should_evaluate:
            new_best = self._track_best(self._evaluate())
            if getattr(self.args.save_strategy, "value", self.args.save_strategy) == "best":
                self.control.should_save = new_best
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)

    def _log_training(self) -> None:
        record = {"loss": self.run.loss_since_log / self.run.steps_since_log, "grad_norm": self.run.last_grad_norm,
                  "learning_rate": self.run.last_lr}
        if self.loss_scaler.kind != "none":
            record["loss_scale"] = self.loss_scaler.loss_scale
        self.run.loss_since_log, self.run.steps_since_log = 0.0, 0
        self.log(record)

    def _evaluate(self) -> dict:
        metrics = self.evaluate()
        self.last_evaluation = (self.state.global_step, metrics)
        if self.parallel.is_main:
            plot_curves(os.path.join(self.args.output_dir, METRICS_FILE),
                        os.path.join(self.args.output_dir, CURVES_FILE),
                        self.best_metric_name() if self.best_metric_name() != "eval_loss" else None)
        return metrics

    def _finish_training(self, plan, started: float, first_step: int) -> TrainOutput:
        if self.args.load_best_model_at_end and self.state.best_global_step is not None:
            self._load_best()
        steps = self.state.global_step - first_step
        metrics = speed_metrics("train", started, num_samples=steps * plan.examples_per_step, num_steps=steps)
        counted = self.run.total_steps_counted
        metrics["train_loss"] = self.run.total_loss / counted if counted else float("nan")
        self.log(dict(metrics))
        self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
        return TrainOutput(self.state.global_step, metrics["train_loss"], metrics)

    def _global_batch_size(self) -> int:
        return self.args.per_device_train_batch_size * self.parallel.world_size

    def _model_inputs(self, batch: dict) -> dict:
        """The columns the model takes: metadata never; others the model's construct() does not name only
        with remove_unused_columns=False."""
        keep_all = self.input_names is None or not self.args.remove_unused_columns
        return {name: values for name, values in batch.items()
                if name not in self.metadata_columns and (keep_all or name in self.input_names)}

    def _broadcast_weights(self) -> None:
        """Start every worker from rank 0's trainable weights (seeded inits agree; this makes sure)."""
        if self.parallel.world_size == 1:
            return
        values = self.parallel.broadcast_from_main(list(self.params.values()))
        for param, value in zip(self.params.values(), values):
            ops.assign(param, value)

    # ---- best model and the test splits (THUDM's evaluation protocol) ---------------------------------
    def best_metric_name(self) -> str:
        name = self.args.metric_for_best_model or "loss"
        return name if name.startswith("eval_") else f"eval_{name}"

    def _greater_is_better(self) -> bool:
        if self.args.greater_is_better is not None:
            return self.args.greater_is_better
        return not self.best_metric_name().endswith("loss")

    def _improves(self, value: float, best: float) -> bool:
        """Strictly better, as HF; with `ties_are_improvements` (ms_ptuning's RunTrainingArguments) an equal
        value too, so the later of tied evaluations is kept (THUDM/P-tuning's LAMA loop compares with >=)."""
        if value == best:
            return bool(getattr(self.args, "ties_are_improvements", False))
        return value > best if self._greater_is_better() else value < best

    def _track_best(self, metrics: dict) -> bool:
        """A new best dev metric: remember it, save best_model/, score the test splits. Returns whether."""
        name = self.best_metric_name()
        if name not in metrics:
            raise ValueError(f"metric_for_best_model {name!r} is not among the evaluation metrics {sorted(metrics)}")
        value, best = metrics[name], self.state.best_metric
        if best is not None and not self._improves(value, best):
            return False
        self.state.best_metric, self.state.best_global_step = value, self.state.global_step
        self.run.best_epoch = self.state.epoch
        if self.parallel.is_main:
            self.state.best_model_checkpoint = os.path.join(self.args.output_dir, BEST_DIR)
            save_adapter(self.model, self.state.best_model_checkpoint, best_step=self.state.global_step,
                         **{name: value}, **self.adapter_metadata)
        self.run.best_test_metrics = {}
        for split, dataset in self.test_datasets.items():
            scores = self.predict(dataset, metric_key_prefix=split).metrics
            self.run.best_test_metrics[split] = scores
            self.log(dict(scores))
        return True

    @property
    def best_evaluation(self) -> dict | None:
        """The best dev metric, its step and epoch, and each test split's metrics at that point."""
        if self.state.best_global_step is None:
            return None
        return {"metric": self.best_metric_name(), "value": self.state.best_metric,
                "step": self.state.best_global_step, "epoch": self.run.best_epoch,
                "test_metrics": dict(self.run.best_test_metrics)}

    def _load_best(self) -> None:
        self.parallel.barrier()  # rank 0 may have written best_model/ just now
        load_adapter(self.model, os.path.join(self.args.output_dir, BEST_DIR))

    # ---- evaluation and prediction (HF's API) ---------------------------------------------------
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        output = self._evaluation_output(eval_dataset if eval_dataset is not None else self.eval_dataset,
                                         ignore_keys, metric_key_prefix, "eval dataset")
        self.log(dict(output.metrics))
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=output.metrics)
        return output.metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test") -> PredictionOutput:
        output = self._evaluation_output(test_dataset, ignore_keys, metric_key_prefix, "test dataset")
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, metrics=output.metrics)
        return output

    def _evaluation_output(self, dataset, ignore_keys, prefix: str, source: str) -> PredictionOutput:
        if ignore_keys is not None:
            raise ValueError("ignore_keys selects entries of dict outputs; ms_ptuning models return arrays")
        if dataset is None:
            raise ValueError(f"no {source} to evaluate: pass one")
        if not any(dataset is known for known in (self.eval_dataset, *self.test_datasets.values())):
            dataset = self._dataset(dataset, source)
        started = time.time()
        loss, predictions, label_ids, inputs, num_batches = self._evaluation_loop(dataset)
        metrics = {}
        if self.compute_metrics is not None and not self.args.prediction_loss_only:
            metrics = (self.compute_metrics(predictions, dataset) if isinstance(self.compute_metrics, DatasetMetrics)
                       else self.compute_metrics(EvalPrediction(predictions, label_ids, inputs=inputs)))
        if loss is not None:
            metrics["loss"] = loss
        metrics = prefixed(metrics, prefix)
        metrics.update(speed_metrics(prefix, started, num_samples=len(dataset), num_steps=num_batches))
        return PredictionOutput(None if self.args.prediction_loss_only else predictions, label_ids, metrics)

    def _evaluation_loop(self, dataset):
        """Eval-mode pass in dataset order → (mean loss or None, predictions, label_ids, inputs, batches).
        With several workers each runs a contiguous share of the rows and all get the whole result."""
        start, stop = self.parallel.row_range(len(dataset))
        rows = np.arange(start, stop) if stop > start else np.arange(1)  # an empty share still yields shapes
        batches = batch_indices(rows, self.args.per_device_eval_batch_size)
        self.callback_handler.eval_dataloader = batches
        loss_sum, loss_rows, collected = 0.0, 0, {"predictions": [], "labels": [], "inputs": []}
        for indices in batches:
            batch = dataset.batch(indices)
            loss, outputs = self.steps.eval_step(self._model_inputs(batch))
            labels = self._labels(batch)
            if self.preprocess_logits_for_metrics is not None:
                outputs = self.preprocess_logits_for_metrics(outputs, labels)
            if loss is not None:
                loss_sum, loss_rows = loss_sum + loss * len(indices), loss_rows + len(indices)
            collected["predictions"].append(outputs)
            collected["labels"].append(labels)
            collected["inputs"].append(batch.get("input_ids") if self._metrics_take_inputs() else None)
            self.control = self.callback_handler.on_prediction_step(self.args, self.state, self.control)
        width = getattr(dataset, "sequence_width", None)  # per-batch padded: outputs padded back to it
        gathered = {key: self._gather(parts, start, stop, len(dataset), width) for key, parts in collected.items()}
        if stop == start:  # the row this worker ran for the shapes is not its to count
            loss_sum, loss_rows = 0.0, 0
        mean_loss = None
        if loss is not None:
            loss_sum, loss_rows = self.parallel.sum_arrays([np.array([loss_sum, loss_rows], np.float64)])[0]
            mean_loss = float(loss_sum / loss_rows)
        return mean_loss, gathered["predictions"], gathered["labels"], gathered["inputs"], len(batches)

    def _labels(self, batch: dict):
        labels = tuple(batch[name] for name in self.label_names if name in batch)
        return None if not labels else labels[0] if len(labels) == 1 else labels

    def _metrics_take_inputs(self) -> bool:
        return "inputs" in (self.args.include_for_metrics or []) or bool(self.args.include_inputs_for_metrics)

    def _gather(self, parts: list, start: int, stop: int, num_rows: int, width: int | None):
        """This worker's per-batch arrays (or tuples of them) → the whole dataset's, on every worker; batches
        of different widths padded with -100 to `width` (None: the widest, agreed between the workers)."""
        if parts[0] is None:
            return None
        several = isinstance(parts[0], tuple)
        pieces = [concatenate_rows(list(part), width) for part in zip(*parts)] if several else [
            concatenate_rows(parts, width)]
        if stop == start:  # this worker ran one row for the shapes only
            pieces = [piece[:0] for piece in pieces]
        if self.parallel.world_size > 1:
            if width is None:
                pieces = [concatenate_rows([piece], self.parallel.max_over_workers(piece.shape[1]))
                          if piece.ndim > 1 else piece for piece in pieces]
            pieces = [self.parallel.gather_rows(piece, start, num_rows) for piece in pieces]
        return tuple(pieces) if several else pieces[0]

    # ---- logging --------------------------------------------------------------------------------
    def log(self, logs: dict, start_time=None) -> None:
        """HF's log(): epoch added, appended to state.log_history, on_log fired; during train() also a
        line of metrics.jsonl (rank 0)."""
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        record = {**logs, "step": self.state.global_step}
        self.state.log_history.append(record)
        if self._writing_log and self.parallel.is_main:
            with open(os.path.join(self.args.output_dir, METRICS_FILE), "a") as handle:
                handle.write(json.dumps(record) + "\n")
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)

    # ---- output directory, checkpoints and resume -------------------------------------------------
    def _holds_a_run(self) -> bool:
        output_dir = self.args.output_dir
        return os.path.exists(os.path.join(output_dir, METRICS_FILE)) or bool(list_checkpoints(output_dir))

    def _checkpoint_to_resume(self, requested) -> str | None:
        if requested is not True:
            if requested and not os.path.isdir(requested):
                raise FileNotFoundError(f"resume_from_checkpoint: {requested} is not a directory")
            return requested or None
        found = latest_checkpoint(self.args.output_dir)
        if found is None and self._holds_a_run() and not self.args.overwrite_output_dir:
            raise FileNotFoundError(f"nothing to resume: {self.args.output_dir} holds a run but no complete "
                                    "checkpoint-<step> (it stopped before its first save); pass "
                                    "--overwrite_output_dir to start it again")
        return found

    def _prepare_output_dir(self, resuming: bool) -> None:
        output_dir = self.args.output_dir
        replacing = self._holds_a_run() and not resuming
        if replacing and not self.args.overwrite_output_dir:
            raise FileExistsError(f"{output_dir} already holds a run (metrics/checkpoints); pass "
                                  "--overwrite_output_dir to replace it or --resume to continue it")
        if not self.parallel.is_main:  # every worker checks, rank 0 alone changes files
            return
        if replacing:
            for path in list_checkpoints(output_dir):
                discard(path)
            shutil.rmtree(os.path.join(output_dir, BEST_DIR), ignore_errors=True)
            for name in (METRICS_FILE, CURVES_FILE):
                if os.path.exists(os.path.join(output_dir, name)):
                    os.remove(os.path.join(output_dir, name))
        if not resuming:  # a resume removes them once the checkpoint is accepted
            remove_leftovers(output_dir)
        os.makedirs(output_dir, exist_ok=True)

    def _start_state(self, plan, loaded: TrainerState | None = None) -> None:
        """A fresh TrainerState (or a checkpoint's) with this run's step counts, HF's fractional steps
        resolved against the total, and the callbacks whose state a checkpoint keeps."""
        self.state = loaded or self._new_state()
        self.state.is_local_process_zero = self.state.is_world_process_zero = self.parallel.is_main
        self.state.max_steps, self.state.num_train_epochs = plan.total_steps, plan.num_epochs
        self.state.train_batch_size = self._global_batch_size()
        self.state.compute_steps(self.args, plan.total_steps)
        if loaded is None:
            self.run = RunState()
            self.state.stateful_callbacks = callback_states(self.callback_handler.callbacks, self.control)

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

    def _save_checkpoint(self) -> str | None:
        if not self.parallel.is_main:
            return None
        trainable = to_numpy(self.params)
        broken = [name for name, array in trainable.items() if not np.isfinite(array).all()]
        if broken:  # an update overflowed; saving would turn the last good checkpoint into a bad one
            raise NonFiniteLossError(f"step {self.state.global_step}: weights {broken[:5]} became NaN/Inf; not "
                                     f"saved. Last good checkpoint: {latest_checkpoint(self.args.output_dir)}")
        self.state.stateful_callbacks = callback_states(self.callback_handler.callbacks, self.control)
        run_state = {**dataclasses.asdict(self.run), "global_step": self.state.global_step, "seed": self.args.seed,
                     "metric_for_best_model": self.best_metric_name(), "config": self.run_config,
                     "loss_scaler": self.loss_scaler.state_dict()}
        path = save_checkpoint(self.args.output_dir, self.state.global_step, trainable, self.steps.optimizer_state(),
                               run_state, extra_files={TRAINER_STATE_FILE: dataclasses.asdict(self.state)})
        prune_checkpoints(self.args.output_dir, self.args.save_total_limit)
        return path

    def _resume(self, checkpoint: str, plan) -> None:
        """Check everything first (config, names, shapes, dtypes), then load, then rewrite the metrics log
        from the checkpoint's log history, so a refused resume changes nothing."""
        trainable, optimizer, saved = load_checkpoint(checkpoint)
        differences = config_differences(saved["config"], self.run_config)
        if differences:
            raise ValueError(f"cannot resume from {checkpoint}: it was written by a run with other settings "
                             f"({'; '.join(differences)}). An exact resume needs the checkpoint's settings; "
                             "to start a new run use another --output_dir or --overwrite_output_dir")
        if set(trainable) != set(self.params):
            raise ValueError(f"cannot resume from {checkpoint}: its trainable weights differ from the model's "
                             f"(missing {sorted(set(self.params) - set(trainable))[:10]}, "
                             f"unexpected {sorted(set(trainable) - set(self.params))[:10]})")
        loaded = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_FILE))
        assign_weights(self.model, trainable, strict=False, source=checkpoint)
        self.steps.load_optimizer_state(optimizer)
        self.loss_scaler.load_state_dict(saved["loss_scaler"])
        self.run = RunState(**{field.name: saved[field.name] for field in dataclasses.fields(RunState)})
        self._start_state(plan, loaded)
        if self.args.restore_callback_states_from_checkpoint:
            restore_callback_states(self.callback_handler, self.control, loaded.stateful_callbacks)
        if self.parallel.is_main:
            self._rewrite_log()
            remove_leftovers(self.args.output_dir)

    def _rewrite_log(self) -> None:
        """metrics.jsonl as the checkpoint's log history: the records the killed run wrote after it are
        dropped, and the resumed run writes them again."""
        path = os.path.join(self.args.output_dir, METRICS_FILE)
        with open(path + ".tmp", "w") as handle:
            handle.writelines(json.dumps(record) + "\n" for record in self.state.log_history)
        os.replace(path + ".tmp", path)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The trainable weights as an adapter (safetensors + adapter_config.json), and the tokenizer when
        the Trainer has a processing_class. Rank 0 writes."""
        output_dir = output_dir or self.args.output_dir
        if not self.parallel.is_main:
            return
        save_adapter(self.model, output_dir, **self.adapter_metadata)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def save_state(self) -> None:
        """HF's save_state: trainer_state.json in output_dir."""
        if self.parallel.is_main:
            self.state.save_to_json(os.path.join(self.args.output_dir, TRAINER_STATE_FILE))


@dataclasses.dataclass
class RunState:
    """What an exact resume needs beyond HF's TrainerState (saved as run_state.json)."""

    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch consumed
    applied_steps: int = 0  # optimizer steps applied (a skipped fp16 step is not): the schedule's position
    last_lr: float = 0.0
    last_grad_norm: float = float("nan")
    loss_since_log: float = 0.0  # the next logged loss is their mean, as HF's
    steps_since_log: int = 0
    total_loss: float = 0.0  # train_loss = the mean over the whole run
    total_steps_counted: int = 0
    best_epoch: float | None = None
    best_test_metrics: dict = dataclasses.field(default_factory=dict)


def refuse_constructor_arguments(data_collator, optimizers, **unsupported) -> None:
    """HF's constructor arguments this Trainer cannot honour, refused by name when given."""
    if hasattr(data_collator, "columns") or hasattr(data_collator, "column_names"):
        raise TypeError("the third positional argument is data_collator (Hugging Face's order: model, args, "
                        "data_collator, train_dataset, eval_dataset, ...): pass train_dataset=... by keyword")
    given = [f"{name} ({UNSUPPORTED_CONSTRUCTOR_ARGUMENTS[name]})" for name, value in unsupported.items()
             if value is not None]
    if tuple(optimizers or (None, None)) != (None, None):
        given.append("optimizers (the step engine runs torch's AdamW; set its hyperparameters in TrainingArguments)")
    if given:
        raise ValueError("Trainer arguments not supported by ms_ptuning: " + "; ".join(given))


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
