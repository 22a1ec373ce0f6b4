"""The PyTorch side of a comparison, one seed: `python -m ms_ptuning.comparison.torch_side EXCHANGE_DIR OUTPUT_DIR`
(several pairs: one after the other in one process).

Trains as THUDM/P-tuning-v2's run.py does: the real `transformers.Trainer` and `TrainingArguments` in real
torch, over the reference head (`ms_ptuning.reference.models`) on the pretrained backbone that
`AutoModel.from_pretrained` loads, with HF's optimizer (AdamW, no weight decay on biases and LayerNorm), its
schedule (or, with `lr_decay_per_epoch`, THUDM's ExponentialLR stepped once per epoch), clipping, dropout and
evaluation loop. THUDM's protocol: the validation split is scored at every evaluation, the test splits at each
one that sets a new best. What ms_ptuning hands over (see `exchange`) makes the runs comparable: the encoded
examples, the initial weights of the new modules, the settings, and the data order (the epoch orders of
ms_ptuning's Trainer, a function of the seed). The dropout masks differ: each side draws its own.

OUTPUT_DIR is what THUDM's run.py leaves: `trainer_state.json` (HF's log history), `train_results.json`,
`eval_results.json`, `test_results.json`, `best_results.json` and `all_results.json` (`Trainer.save_metrics`),
plus `step_losses.json` (every optimizer step's loss unrounded; HF's log rounds to 4 digits).
This process never imports mindnlp (it would replace torch): only ms_ptuning's task metrics, numpy datasets,
config and the reference.
"""

import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from transformers.trainer_callback import TrainerCallback

# the reference first: run as `python -m`, this module is `__main__`, and the package knows a PyTorch process
# (no mindnlp for the modules below) by `ms_ptuning.reference` being imported (ms_ptuning.TORCH_SIDE)
from ..reference.models import HEADS  # isort: skip
from ..config import PTuningConfig
from ..data.dataset import batch_indices, concatenate_rows, epoch_order
from ..tasks.custom import task_for
from . import exchange

BACKBONE = "encoder.backbone."


def build_model(spec: dict, init_weights: dict):
    """The reference head over the pretrained backbone, holding ms_ptuning's initial weights for every module
    the checkpoint does not hold (refused if any such module is missing from them)."""
    config = transformers.AutoConfig.from_pretrained(spec["model_name_or_path"], **spec["dropout"])
    backbone, loading = transformers.AutoModel.from_pretrained(
        spec["model_name_or_path"], config=config, attn_implementation="eager", use_safetensors=True,
        output_loading_info=True)
    model = HEADS[spec["head"]](backbone, PTuningConfig.from_dict(spec["ptuning_config"]))
    state = model.state_dict()
    needed = {name for name in state if not name.startswith(BACKBONE)}
    needed |= {BACKBONE + name for name in loading["missing_keys"]} & set(state)
    absent, unknown = needed - set(init_weights), set(init_weights) - set(state)
    if absent or unknown:
        raise KeyError(f"initial weights do not fit the reference model: absent {sorted(absent)}, "
                       f"unknown {sorted(unknown)}")
    model.load_state_dict({name: torch.from_numpy(value) for name, value in init_weights.items()}, strict=False)
    return model


class Split(torch.utils.data.Dataset):
    """An encoded split; its items are row indices, batched by `Split.collate` as ms_ptuning batches them
    (`ArrayDataset.batch`: the same per-batch widths)."""

    def __init__(self, data, input_names: set):
        self.data, self.input_names = data, input_names

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list) -> dict:
        batch = self.data.batch(np.asarray(indices))
        return {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in batch.items()
                if name in self.input_names}


class EpochBatches(torch.utils.data.Sampler):
    """ms_ptuning's Trainer's micro-batches: epoch e draws `epoch_order(N, seed, e)` cut into batches. Each
    iteration is the next epoch (HF's loop iterates the dataloader once per epoch)."""

    def __init__(self, num_rows: int, batch_size: int, seed: int, drop_last: bool):
        self.num_rows, self.batch_size, self.seed, self.drop_last, self.epoch = num_rows, batch_size, seed, drop_last, 0

    def __len__(self) -> int:
        return len(batch_indices(np.arange(self.num_rows), self.batch_size, self.drop_last))

    def __iter__(self):
        order = epoch_order(self.num_rows, self.seed, self.epoch)
        self.epoch += 1
        return iter([batch.tolist() for batch in batch_indices(order, self.batch_size, self.drop_last)])


class StepLosses(TrainerCallback):
    """Each optimizer step's loss, unrounded: the sum of its micro-batches' returned (already divided) losses."""

    def __init__(self):
        self.pending, self.losses = 0.0, []

    def on_step_end(self, args, state, control, **kwargs):
        self.losses.append(self.pending)
        self.pending = 0.0


class ReferenceTrainer(transformers.Trainer):
    """HF's Trainer with THUDM's additions (test splits at each new best dev metric, ExponentialLR per epoch)
    and ms_ptuning's batches and data order."""

    def __init__(self, model, args, splits: dict, task, spec: dict):
        self.splits, self.task, self.spec = splits, task, spec
        self.best, self.step_losses, self.training = None, StepLosses(), False
        super().__init__(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"],
                         callbacks=[self.step_losses])

    def train(self, *args, **kwargs):
        self.training = True
        try:
            return super().train(*args, **kwargs)
        finally:
            self.training = False

    def get_train_dataloader(self):
        split = self.train_dataset
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        sampler = EpochBatches(len(split), self.args.per_device_train_batch_size, seed, self.args.dataloader_drop_last)
        return torch.utils.data.DataLoader(split, batch_sampler=sampler, collate_fn=split.collate)

    def _sequential(self, split):
        batches = batch_indices(np.arange(len(split)), self.args.per_device_eval_batch_size)
        return torch.utils.data.DataLoader(split, batch_sampler=[batch.tolist() for batch in batches],
                                           collate_fn=split.collate)

    def get_eval_dataloader(self, eval_dataset=None):
        return self._sequential(self.eval_dataset if eval_dataset is None else eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._sequential(test_dataset)

    def create_optimizer(self):
        if self.spec["optim"] == "adam_l2":  # THUDM/P-tuning's LAMA optimizer: torch Adam, L2 in the gradient
            args = self.args
            self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad],
                                              lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                              eps=args.adam_epsilon, weight_decay=args.weight_decay)
            return self.optimizer
        return super().create_optimizer()

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        gamma = self.spec["lr_decay_per_epoch"]
        if gamma is None:
            return super().create_scheduler(num_training_steps, optimizer)
        # THUDM's ExponentialLR stepped once per epoch, as a per-step schedule (HF steps it every step)
        batches = len(batch_indices(np.arange(len(self.train_dataset)), self.args.per_device_train_batch_size,
                                    self.args.dataloader_drop_last))
        steps_per_epoch = math.ceil(batches / self.args.gradient_accumulation_steps)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer if optimizer is None else optimizer, lambda step: gamma ** (step // steps_per_epoch))
        return self.lr_scheduler

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_losses.pending += float(loss)
        return loss

    def _scored_on(self, split):
        """HF's compute_metrics sees predictions only; our task metrics also read the split (SQuAD's offsets)."""
        def compute(prediction):
            width = split.data.sequence_width
            predictions = prediction.predictions
            pad = lambda array: concatenate_rows([array], width) if width else array  # as ms_ptuning pads
            predictions = tuple(map(pad, predictions)) if isinstance(predictions, tuple) else pad(predictions)
            return self.task.compute_metrics(predictions, split.data)
        self.compute_metrics = compute

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        split = self.eval_dataset if eval_dataset is None else eval_dataset
        self._scored_on(split)
        metrics = super().evaluate(split, ignore_keys, metric_key_prefix)
        if metric_key_prefix == "eval" and self.training:  # the best is chosen among training's evaluations
            self._track_best(metrics)
        return metrics

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        self._scored_on(test_dataset)
        return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    def _track_best(self, metrics: dict) -> None:
        name = self.args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = metrics[name]
        if self.best is not None:
            better = value > self.best["value"] if self.args.greater_is_better else value < self.best["value"]
            tie = value == self.best["value"] and self.spec["ties_are_improvements"]
            if not (better or tie):
                return
        tests = {}
        for split in self.spec["test_splits"]:
            tests.update(self.predict(self.splits[split], metric_key_prefix=split).metrics)
        self.best = {"value": value, "step": self.state.global_step, "epoch": self.state.epoch, "metric": name,
                     "test": tests}


def training_arguments(spec: dict, output_dir: str) -> transformers.TrainingArguments:
    values = {name: value for name, value in spec["training_arguments"].items() if value is not None}
    return transformers.TrainingArguments(output_dir=output_dir, save_strategy="no", report_to="none",
                                          disable_tqdm=True, load_best_model_at_end=False, use_cpu=True, **values)


def run(directory: str, output_dir: str) -> dict:
    spec = exchange.read_spec(directory)
    task_spec = dict(spec["task"])
    task = task_for(task_spec.pop("name"), task_spec.pop("data_dir"), **task_spec)
    args = training_arguments(spec, output_dir)
    transformers.set_seed(args.seed)
    model = build_model(spec, exchange.read_init_weights(directory))
    input_names = set(model.forward.__code__.co_varnames[1:model.forward.__code__.co_argcount])
    splits = {name: Split(exchange.read_split(directory, name), input_names)
              for name in ("train", "validation", *spec["test_splits"])}
    trainer = ReferenceTrainer(model, args, splits, task, spec)
    output = trainer.train()
    trainer.save_metrics("train", output.metrics)
    evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    final = evaluations[-1] if evaluations and evaluations[-1]["step"] == trainer.state.global_step else None
    final = {k: v for k, v in final.items() if k.startswith("eval_")} if final else trainer.evaluate()
    trainer.save_metrics("eval", final)
    trainer.save_state()  # after the final evaluation, which its log history then holds
    if trainer.best is not None:
        best = trainer.best
        trainer.save_metrics("best", {f"best_{best['metric']}": best["value"], "best_step": best["step"],
                                      "best_epoch": best["epoch"]})
        tests = best["test"]
    else:  # no evaluation during training: the final model is scored, as ms_ptuning does
        tests = {}
        for split in spec["test_splits"]:
            tests.update(trainer.predict(splits[split], metric_key_prefix=split).metrics)
    if tests:
        trainer.save_metrics("test", tests)
    with open(os.path.join(output_dir, "step_losses.json"), "w") as handle:
        json.dump({"step_loss": trainer.step_losses.losses, "mindnlp_imported": "mindnlp" in sys.modules,
                   "torch": torch.__version__, "transformers": transformers.__version__}, handle)
    return final


if __name__ == "__main__":
    pairs = sys.argv[1:]
    if not pairs or len(pairs) % 2:
        sys.exit("usage: python -m ms_ptuning.comparison.torch_side EXCHANGE_DIR OUTPUT_DIR [EXCHANGE_DIR OUTPUT_DIR ...]")
    for exchange_dir, output_dir in zip(pairs[::2], pairs[1::2]):  # several runs share one process start-up
        run(exchange_dir, output_dir)
