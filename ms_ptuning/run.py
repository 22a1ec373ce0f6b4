"""Train and evaluate one task: `python -m ms_ptuning.run --task rte --model_name_or_path DIR ...`.

Flags are the reference's (THUDM/P-tuning-v2 `run.py`): Hugging Face `TrainingArguments` plus the model
arguments (`ms_ptuning.arguments`) and the data arguments below; `--mode prefix|prompt|finetune` replaces
its `--prefix`/`--prompt` switches.
Writes to `--output_dir`: metrics.jsonl, curves.png, checkpoints, best_model/, adapter/, results.json.
Data-parallel: `msrun --worker_num N ... python -m ms_ptuning.run ...` (scripts/run_distributed.sh).
"""

import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from .distributed import DataParallel, serve_if_scheduler

serve_if_scheduler()  # msrun runs this command as its scheduler too: serve before mindnlp is loaded
from .backend import seed_everything, set_device_target  # noqa: E402  (mindnlp must patch transformers first)
from transformers import HfArgumentParser

from .adapters import save_adapter
from .arguments import ModelArguments, RunTrainingArguments
from .config import PTuningConfig
from .models import HEADS
from .backbones import input_positions, load_backbone, load_tokenizer
from .deberta_prefix import DEBERTA_MODEL_TYPES
from .tasks import get_task
from .training import Trainer
from .training.precision import default_loss_scaler, mixed_precision_dtype
from .weights import count_parameters, named_weights, trainable_weights


@dataclass
class DataArguments:
    task: str = field(metadata={"help": "task name, e.g. rte, boolq, conll03, squad, rotten_tomatoes"})
    data_dir: str | None = field(default=None, metadata={"help": "local directory with the task's files"})
    max_seq_length: int | None = field(default=None, metadata={
        "help": "cut inputs to this many tokens; default: the task's (128; SQuAD 384; NER/SRL the model's "
                "maximum, as the reference)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "subsample train (seeded)"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "keep the first N validation examples"})
    template_id: int = field(default=0, metadata={"help": "WiC/WSC input template, as the reference"})
    eval_splits: str = field(default="", metadata={
        "help": "comma-separated extra splits scored after training with the final model, e.g. test_wsj,test_brown"})


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


def build_model(model_args: ModelArguments, task, mixed_precision: str, width: int):
    """The task's head over the pretrained backbone in the mode the arguments ask for, checked to take
    inputs of `width` tokens. Refusals (precision, length) come before any output is written."""
    compute_dtype = mixed_precision_dtype(mixed_precision)
    backbone = load_backbone(model_args.model_name_or_path, allow_pickle=model_args.allow_pickle,
                             hidden_dropout_prob=model_args.hidden_dropout_prob)
    ptuning_config = model_args.ptuning_config(model_args.hidden_dropout_prob, task.num_labels, task.problem_type)
    check_sequence_length(width, backbone.config, ptuning_config, model_args.model_name_or_path)
    return HEADS[task.head](backbone, ptuning_config, compute_dtype)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: RunTrainingArguments) -> dict:
    set_device_target(model_args.device_target)
    seed_everything(training_args.seed)
    task = get_task(data_args.task)
    tokenizer = load_tokenizer(model_args.tokenizer_name or model_args.model_name_or_path,
                               pretokenized_words=task.head == "token_classification")
    options = {"template_id": data_args.template_id}
    max_length = task.max_seq_length if data_args.max_seq_length is None else data_args.max_seq_length
    train_examples = subsample(task.load(data_args.data_dir, "train"), data_args.max_train_samples, training_args.seed)
    eval_examples = task.load(data_args.data_dir, "validation")[:data_args.max_eval_samples]
    train_dataset = task.encode(train_examples, tokenizer, max_length, **options)
    eval_dataset = task.encode(eval_examples, tokenizer, max_length, **options)

    width = max(dataset.columns["input_ids"].shape[-1] for dataset in (train_dataset, eval_dataset))
    model = build_model(model_args, task, training_args.mixed_precision, width)
    # join the msrun cluster only now: once it is joined, mindnlp's from_pretrained expects a mindtorch
    # process group (which MindSpore's own collectives do not need)
    parallel = DataParallel.from_environment()
    trainable, total = count_parameters(trainable_weights(model)), count_parameters(named_weights(model))
    workers = f"; {parallel.world_size} data-parallel workers" if parallel.world_size > 1 else ""
    if parallel.is_main:
        print(f"[ms_ptuning] {task.name}: {model_args.mode} on {model_args.model_name_or_path}; trainable "
              f"parameters {trainable:,} of {total:,}; train {len(train_dataset)}, eval {len(eval_dataset)}{workers}")

    if training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = task.metric_for_best_model
        training_args.greater_is_better = task.greater_is_better
    metadata = {"task": task.name, "labels": list(task.labels), "base_model": model_args.model_name_or_path}
    trainer = Trainer(model, training_args, train_dataset, eval_dataset,
                      compute_metrics=task.compute_metrics, metadata_columns=task.metadata_columns,
                      adapter_metadata=metadata, parallel=parallel,
                      loss_scaler=default_loss_scaler(training_args.mixed_precision))
    train_result = trainer.train(resume_from_checkpoint=True if training_args.resume else None)
    evaluated_at_end = (trainer.last_evaluation is not None and trainer.last_evaluation[0] == trainer.global_step
                        and not training_args.load_best_model_at_end)
    final_metrics = dict(trainer.last_evaluation[1]) if evaluated_at_end else trainer.evaluate()
    for split in filter(None, (name.strip() for name in data_args.eval_splits.split(","))):
        split_dataset = task.encode(task.load(data_args.data_dir, split), tokenizer, max_length, **options)
        final_metrics.update(trainer.evaluate(split_dataset, prefix=split))
    results = {"task": task.name, "mode": model_args.mode, "trainable_parameters": trainable,
               "total_parameters": total, **train_result, **final_metrics,
               f"best_{trainer.best_metric_name()}": train_result["best_metric"]}
    if not parallel.is_main:
        return results
    save_adapter(model, os.path.join(training_args.output_dir, "adapter"), **metadata)
    with open(os.path.join(training_args.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    return results


def parse(argv=None):
    parser = HfArgumentParser((ModelArguments, DataArguments, RunTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv=None) -> int:
    results = run(*parse(argv))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
