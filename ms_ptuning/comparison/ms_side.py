"""ms_ptuning's side of a comparison, one seed: `python -m ms_ptuning.comparison.ms_side EXCHANGE_DIR RUN_FLAGS...`.

Exactly `python -m ms_ptuning.run RUN_FLAGS...` (same parsing, same Trainer, same results.json), except that
after the splits are encoded and the model is built, and before anything trains, the exchange directory
gets what the torch side needs (see `exchange`): the encoded splits, the initial weights of every new module,
and the settings.
"""

import os
import sys

from .. import run as run_module
from ..backbones import dropout_fields
from ..cli import report_user_errors
from ..weights import named_weights, to_numpy
from . import exchange

# TrainingArguments fields that shape training or evaluation, handed to the torch side's TrainingArguments
SHARED_ARGUMENTS = ("seed", "data_seed", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
                    "max_grad_norm", "num_train_epochs", "max_steps", "lr_scheduler_type", "lr_scheduler_kwargs",
                    "warmup_ratio", "warmup_steps", "per_device_train_batch_size", "per_device_eval_batch_size",
                    "gradient_accumulation_steps", "eval_strategy", "eval_steps", "eval_delay", "eval_on_start",
                    "logging_strategy", "logging_steps", "logging_first_step", "metric_for_best_model",
                    "greater_is_better", "dataloader_drop_last")
# ms_ptuning's own TrainingArguments additions the torch side implements
OWN_ARGUMENTS = ("optim", "lr_decay_per_epoch", "ties_are_improvements")


def checkpoint_names(model_dir: str) -> set:
    """Tensor names in the model directory's safetensors files (names only, nothing is read)."""
    from safetensors import safe_open
    names = set()
    for file in sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors")):
        with safe_open(os.path.join(model_dir, file), "np") as handle:
            names.update(handle.keys())
    return names


def new_weights(model, model_dir: str) -> dict:
    """Every weight that does not come from the checkpoint: outside the backbone, or a backbone weight whose
    name (with or without the checkpoint's model prefix, e.g. `bert.`) the checkpoint lacks."""
    stored, backbone = checkpoint_names(model_dir), "encoder.backbone."
    def from_checkpoint(name: str) -> bool:
        inner = name[len(backbone):]
        return any(key == inner or key.endswith("." + inner) for key in stored)
    return {name: value for name, value in to_numpy(named_weights(model)).items()
            if not (name.startswith(backbone) and from_checkpoint(name))}


def write_exchange(directory: str, trainer, model_args, data_args, training_args) -> None:
    if training_args.mixed_precision != "no":
        raise ValueError("--mixed_precision: a comparison trains both sides in float32 (the torch side runs on CPU)")
    os.makedirs(directory, exist_ok=True)
    splits = {"train": trainer.train_dataset, "validation": trainer.eval_dataset, **trainer.test_datasets}
    for split, dataset in splits.items():
        exchange.write_split(directory, split, dataset)
    exchange.write_init_weights(directory, new_weights(trainer.model, model_args.model_name_or_path))
    exchange.write_spec(directory, {
        "task": {"name": data_args.task, "data_dir": data_args.data_dir,
                 **{flag: getattr(data_args, flag) for flag in run_module.OWN_DATA_FLAGS}},
        "head": type(trainer.model).head_name, "model_name_or_path": os.path.abspath(model_args.model_name_or_path),
        "ptuning_config": trainer.model.config.to_dict(),
        "dropout": dropout_fields(trainer.model.backbone.config.model_type, model_args.dropout_flags()),
        "test_splits": list(trainer.test_datasets),
        "training_arguments": {name: exchange.as_json(getattr(training_args, name)) for name in SHARED_ARGUMENTS},
        **{name: exchange.as_json(getattr(training_args, name)) for name in OWN_ARGUMENTS}})


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    directory, run_argv = argv[0], argv[1:]

    def prepare_and_train() -> int:
        model_args, data_args, training_args = run_module.parse(run_argv)
        prepared = run_module.prepare(model_args, data_args, training_args)
        write_exchange(directory, prepared[0], model_args, data_args, training_args)
        run_module.train_and_report(*prepared)
        return 0

    return report_user_errors("ms_ptuning.comparison", prepare_and_train)


if __name__ == "__main__":
    sys.exit(main())
