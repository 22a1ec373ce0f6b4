"""Train and evaluate one task: `python -m ms_ptuning.run --task rte --model_name_or_path DIR ...`.

Flags are the reference's (THUDM/P-tuning-v2 `run.py`): Hugging Face `TrainingArguments` plus the model
arguments (`ms_ptuning.arguments`) and the data arguments below; `--mode prefix|prompt|finetune` replaces
its `--prefix`/`--prompt` switches.
Writes to `--output_dir`: metrics.jsonl, curves.png, checkpoints, best_model/, adapter/, results.json.
Evaluation follows THUDM: the validation split is scored at every evaluation, and the `--eval_splits` test
splits at every evaluation that sets a new best validation metric; results.json reports the best validation
metric with its step and epoch and the test splits' metrics at that point.
Data-parallel: `msrun --worker_num N ... python -m ms_ptuning.run ...` (scripts/run_distributed.sh).
"""

import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .distributed import DataParallel, serve_if_scheduler

serve_if_scheduler()  # msrun runs this command as its scheduler too: serve before mindnlp is loaded
from .backend import seed_everything, set_device_target  # noqa: E402  (ours to order: WITHOUT_BACKEND)
from transformers import HfArgumentParser

from .adapters import save_adapter
from .arguments import ModelArguments, RunTrainingArguments
from .config import PTuningConfig
from .models import HEADS
from .backbones import input_positions, load_backbone, load_tokenizer
from .interop.init_from import init_from
from .cli import report_user_errors
from .deberta_prefix import DEBERTA_MODEL_TYPES
from .device.jit import set_jit_level
from .execution import choose_backend
from .tasks.custom import task_for
from .training import DatasetMetrics, Trainer
from .training.arguments import resolve_precision
from .training.precision import default_loss_scaler, mixed_precision_dtype
from .weights import count_parameters, named_weights, trainable_weights


@dataclass
class DataArguments:
    task: str = field(metadata={"help": "task name, e.g. rte, boolq, conll03, squad, rotten_tomatoes; "
                                        "text_classification / token_classification for your own files"})
    data_dir: str | None = field(default=None, metadata={"help": "local directory with the task's files"})
    train_file: str | None = field(default=None, metadata={
        "help": "own data (text_/token_classification): csv, tsv, json, jsonl, CoNLL .conll/.txt or a "
                "save_to_disk directory; the format comes from the extension"})
    validation_file: str | None = field(default=None, metadata={"help": "own data: validation split, as --train_file"})
    test_file: str | None = field(default=None, metadata={"help": "own data: test split (--eval_splits test)"})
    text_column_names: str | None = field(default=None, metadata={
        "help": "own data: the text column, or two comma-separated for pairs (default text; token_classification: "
                "tokens)"})
    label_column_name: str | None = field(default=None, metadata={
        "help": "own data: the label column (default label; token_classification: tags)"})
    max_seq_length: int | None = field(default=None, metadata={
        "help": "cut inputs to this many tokens; default: the task's (128; SQuAD 384; NER/SRL the model's "
                "maximum, as the reference)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "subsample train (seeded)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "keep the first N validation examples"})
    template_id: int = field(default=0, metadata={"help": "WiC/WSC input template, as the reference"})
    eval_splits: str = field(default="", metadata={
        "help": "comma-separated test splits scored at every new best validation metric (THUDM's protocol), "
                "e.g. test, or test_wsj,test_brown for conll2005; checked against the task's splits before training. "
                "Empty with --do_predict: test"})


OWN_DATA_FLAGS = ("train_file", "validation_file", "test_file", "text_column_names", "label_column_name")


def subsample(examples: list, limit: int | None, seed: int) -> list:
    if limit is None or limit >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:limit])
    return [examples[i] for i in keep]


def check_sequence_length(width: int, backbone_config, ptuning_config: PTuningConfig, model_dir: str) -> None:
    """Refuse inputs that need more positions than the backbone embeds, before any output is written. On
    CPU/GPU the backbone would fail mid-run with a shape or Gather error naming neither the flag nor the
    limit; on Ascend an out-of-range Gather is undefined (silent garbage). Virtual tokens take positions in
    front of the real ones, except DeBERTa's prefixes (no cache)."""
    limit = input_positions(backbone_config)
    if limit is None:
        return
    virtual = ptuning_config.num_virtual_tokens
    if ptuning_config.mode == "prefix" and backbone_config.model_type in DEBERTA_MODEL_TYPES:
        virtual = 0
    if width + virtual > limit:
        plus = f" + {virtual} virtual tokens" if virtual else ""
        raise ValueError(f"--max_seq_length: inputs of {width} tokens{plus} need more positions than the {limit} "
                         f"the model in {model_dir} has (its config.json); pass --max_seq_length "
                         f"{limit - virtual} or less")


def build_model(model_args: ModelArguments, task, mixed_precision: str, width: int) -> tuple:
    """(the task's head over the pretrained backbone in the mode the arguments ask for, checked to take
    inputs of `width` tokens; the Backend it runs on). Refusals (precision, length, backend) come before any
    output is written."""
    compute_dtype = mixed_precision_dtype(mixed_precision)
    backbone = load_backbone(model_args.model_name_or_path, allow_pickle=model_args.allow_pickle,
                             dropout=model_args.dropout_flags())
    backend = choose_backend(model_args.backend, backbone.config.model_type)
    ptuning_config = model_args.ptuning_config(model_args.hidden_dropout_prob, task.num_labels, task.problem_type)
    check_sequence_length(width, backbone.config, ptuning_config, model_args.model_name_or_path)
    model = HEADS[task.head](backend.backbone(backbone), ptuning_config, compute_dtype)
    if model_args.init_from:
        init_from(model, model_args.init_from, model_args.model_name_or_path, model_args.allow_pickle)
    return model, backend


def requested_test_splits(data_args: DataArguments, training_args: RunTrainingArguments, task) -> list:
    """--eval_splits (or `test` for --do_predict), each checked against the task's splits."""
    names = [name.strip() for name in data_args.eval_splits.split(",") if name.strip()]
    if not names and training_args.do_predict:
        names = ["test"]
    unknown = [name for name in names if name not in task.splits]
    if unknown:
        raise ValueError(f"--eval_splits: task {task.name!r} has no split {', '.join(map(repr, unknown))}; "
                         f"its splits are {', '.join(task.splits)}")
    return names


def adapter_metadata(task, model_args: ModelArguments, max_length: int | None) -> dict:
    """What the adapter records besides its weights, so that `ms-ptuning predict` rebuilds the model and reads
    its input as training did: labels, the task's columns, the base model (absolute: predict may run from
    another directory) and the maximum length training cut at (None: the model's own maximum)."""
    base_model = model_args.model_name_or_path
    base_model = os.path.abspath(base_model) if os.path.isdir(base_model) else base_model
    return {"task": task.name, "labels": list(task.labels), "base_model": base_model,
            "max_seq_length": max_length, **task.settings()}


def run(model_args: ModelArguments, data_args: DataArguments, training_args: RunTrainingArguments) -> dict:
    return train_and_report(*prepare(model_args, data_args, training_args))


def prepare(model_args: ModelArguments, data_args: DataArguments, training_args: RunTrainingArguments) -> tuple:
    """Everything before training: (the Trainer over the encoded splits, the arguments, the adapter's metadata,
    results.json's first entries). `ms_ptuning.comparison` hands the encoded splits and new weights to the
    torch reference from here."""
    set_device_target(model_args.device_target)
    set_jit_level(model_args.jit_level)
    seed_everything(training_args.seed)
    task = task_for(data_args.task, data_args.data_dir, **{name: getattr(data_args, name) for name in OWN_DATA_FLAGS})
    test_splits = requested_test_splits(data_args, training_args, task)
    resolve_precision(training_args)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path,
                               pretokenized_words=task.head == "token_classification")
    options = {"template_id": data_args.template_id}
    max_length = task.max_seq_length if data_args.max_seq_length is None else data_args.max_seq_length
    train_examples = subsample(task.load(data_args.data_dir, "train"), data_args.max_train_samples, training_args.seed)
    eval_examples = task.load(data_args.data_dir, "validation")[:data_args.max_eval_samples]
    train_dataset = task.encode(train_examples, tokenizer, max_length, **options)
    eval_dataset = task.encode(eval_examples, tokenizer, max_length, **options)
    test_datasets = {split: task.encode(task.load(data_args.data_dir, split), tokenizer, max_length, **options)
                     for split in test_splits}  # before training: errors come early

    width = max(dataset.columns["input_ids"].shape[-1] for dataset in (train_dataset, eval_dataset))
    model, backend = build_model(model_args, task, training_args.mixed_precision, width)
    # join the msrun cluster only now: once it is joined, mindnlp's from_pretrained expects a mindtorch
    # process group (which MindSpore's own collectives do not need)
    parallel = DataParallel.from_environment()
    trainable, total = count_parameters(trainable_weights(model)), count_parameters(named_weights(model))
    workers = f"; {parallel.world_size} data-parallel workers" if parallel.world_size > 1 else ""
    if parallel.is_main:
        print(backend.describe())
        print(f"[ms_ptuning] {task.name}: {model_args.mode} on {model_args.model_name_or_path}; trainable "
              f"parameters {trainable:,} of {total:,}; train {len(train_dataset)}, eval {len(eval_dataset)}{workers}")

    if training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = task.metric_for_best_model
        training_args.greater_is_better = task.greater_is_better
    metadata = adapter_metadata(task, model_args, max_length)
    trainer = Trainer(model, training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      compute_metrics=DatasetMetrics(task.compute_metrics), test_datasets=test_datasets,
                      metadata_columns=task.metadata_columns, adapter_metadata=metadata, parallel=parallel,
                      loss_scaler=default_loss_scaler(training_args.mixed_precision), steps=backend.steps)
    results = {"task": task.name, "mode": model_args.mode, "backend": backend.name,
               "device_target": model_args.device_target, "jit_level": model_args.jit_level,
               "run_name": training_args.run_name,
               "trainable_parameters": trainable, "total_parameters": total}
    return trainer, training_args, metadata, results


def train_and_report(trainer: Trainer, training_args: RunTrainingArguments, metadata: dict, results: dict) -> dict:
    """Train, save the adapter at once (nothing later can lose it), score, write results.json."""
    resume = training_args.resume_from_checkpoint or (True if training_args.resume else None)
    train_output = trainer.train(resume_from_checkpoint=resume)
    output_dir = training_args.output_dir
    if trainer.is_world_process_zero():
        save_adapter(trainer.model, os.path.join(output_dir, "adapter"), **metadata)
    last = trainer.last_evaluation
    evaluated_at_end = (last is not None and last[0] == trainer.state.global_step
                        and not training_args.load_best_model_at_end)
    final_metrics = dict(last[1]) if evaluated_at_end else trainer.evaluate()
    results.update({"global_step": train_output.global_step, **train_output.metrics, **final_metrics})
    best = trainer.best_evaluation
    if best is not None:
        results.update({"best_metric": best["value"], "best_step": best["step"], "best_epoch": best["epoch"],
                        f"best_{best['metric']}": best["value"], "test_metrics_from": "best_validation"})
        test_metrics = best["test_metrics"]
    else:  # no evaluation ran during training: the final model is the one to score
        test_metrics = {split: trainer.predict(dataset, metric_key_prefix=split).metrics
                        for split, dataset in trainer.test_datasets.items()}
        results["test_metrics_from"] = "final_model"
    for metrics in test_metrics.values():
        results.update(metrics)
    if trainer.is_world_process_zero():
        with open(os.path.join(output_dir, "results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def parse(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, RunTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    def train_and_print() -> int:
        print(json.dumps(run(*parse(argv)), indent=2))
        return 0

    return report_user_errors("ms_ptuning.run", train_and_print)


if __name__ == "__main__":
    sys.exit(main())
