"""Every field of Hugging Face `TrainingArguments` is honoured or refused: none is silently ignored.

`HONOURED` says how each supported field acts here; `REFUSED` says what to use instead. A refused field
stops the run only when it differs from `TrainingArguments`' own default, so HF-style argument files keep
working. `check_arguments` runs in the Trainer's constructor, before anything is written.
tests/test_trainer_contract.py enumerates the dataclass fields, so a transformers upgrade cannot add a silent one.
"""

from transformers import TrainingArguments

from .optim import OPTIMIZERS
from .schedules import SCHEDULES

HONOURED = {
    "output_dir": "checkpoints, metrics.jsonl, curves.png, best_model/ and the tensorboard logs go here",
    "overwrite_output_dir": "allows replacing a run already in output_dir",
    "do_train": "accepted as in THUDM's commands; ms_ptuning.run always trains (the Trainer never reads it, as HF's)",
    "do_eval": "accepted as in THUDM's commands; ms_ptuning.run always evaluates on the validation split",
    "do_predict": "ms_ptuning.run scores the 'test' split at every new best dev metric when --eval_splits is empty",
    "eval_strategy": "no | steps | epoch, through HF's DefaultFlowCallback",
    "prediction_loss_only": "evaluation returns the loss only: no predictions kept, compute_metrics not called",
    "per_device_train_batch_size": "examples per worker per micro-batch",
    "per_device_eval_batch_size": "examples per evaluation batch",
    "gradient_accumulation_steps": "micro-batches per optimizer step; each micro-batch loss is divided by it",
    "eval_accumulation_steps": "predictions move to host memory after every batch, what 1 asks for",
    "eval_delay": "no evaluation before this many steps/epochs (DefaultFlowCallback)",
    "learning_rate": "the optimizer's peak learning rate",
    "weight_decay": "torch AdamW's decoupled decay, not on biases and LayerNorm weights; with optim adam_l2 "
                    "torch Adam's L2 term added to the gradient of every trainable weight",
    "adam_beta1": "Adam(W) beta1", "adam_beta2": "Adam(W) beta2", "adam_epsilon": "Adam(W) epsilon",
    "max_grad_norm": "global-norm clipping as torch.nn.utils.clip_grad_norm_ (0 turns it off)",
    "num_train_epochs": "epochs (fractional: ceil(epochs x steps per epoch) steps)",
    "max_steps": "optimizer steps; overrides num_train_epochs when > 0",
    "lr_scheduler_type": "linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup",
    "lr_scheduler_kwargs": "num_cycles, power, lr_end as transformers' schedules take them",
    "warmup_ratio": "warmup steps as a fraction of all steps", "warmup_steps": "warmup steps",
    "log_level": "verbosity of the transformers logger on rank 0",
    "log_level_replica": "verbosity of the transformers logger on the other workers",
    "log_on_each_node": "rank 0 alone logs and writes files (one node: what either value gives)",
    "logging_dir": "where report_to tensorboard writes its event files",
    "logging_strategy": "no | steps | epoch (DefaultFlowCallback)",
    "logging_first_step": "log the first step too",
    "logging_steps": "log every N steps; a value below 1 is that fraction of all steps, as HF",
    "logging_nan_inf_filter": "a skipped (non-finite) step's loss is left out of the logged mean",
    "save_strategy": "no | steps | epoch | best (a checkpoint at every new best dev metric)",
    "save_steps": "checkpoint every N steps; a value below 1 is that fraction of all steps",
    "save_total_limit": "older checkpoints beyond it are deleted",
    "save_safetensors": "checkpoints are always safetensors (False is refused)",
    "restore_callback_states_from_checkpoint": "a resume restores ExportableState callbacks (EarlyStopping's counter)",
    "seed": "initialisation, dropout masks and (without data_seed) the data order",
    "data_seed": "the data order alone",
    "full_determinism": "every run is deterministic already: data order and dropout are functions of the seed",
    "dataloader_drop_last": "drop the last incomplete training batch of every epoch",
    "eval_steps": "evaluate every N steps; a value below 1 is that fraction of all steps",
    "run_name": "recorded in results.json",
    "disable_tqdm": "no progress bars (logs are printed instead, as HF)",
    "remove_unused_columns": "columns the model's construct() does not take are kept away from it",
    "label_names": "the dataset columns that form EvalPrediction.label_ids",
    "load_best_model_at_end": "the best dev checkpoint (best_model/) is loaded when training ends",
    "metric_for_best_model": "the dev metric that picks the best model and triggers the test-split scoring",
    "greater_is_better": "direction of metric_for_best_model",
    "optim": "adamw_torch or adamw_torch_fused (torch's AdamW formula), or adam_l2 (torch.optim.Adam with L2 "
             "weight decay; ms_ptuning's RunTrainingArguments accepts the name); anything else is refused",
    "report_to": "none or tensorboard (needs the tensorboardX package); 'all' = tensorboard when installed",
    "resume_from_checkpoint": "a checkpoint directory to resume from (Trainer.train and ms_ptuning.run)",
    "include_inputs_for_metrics": "EvalPrediction.inputs holds the input_ids (deprecated HF spelling)",
    "include_for_metrics": "'inputs': EvalPrediction.inputs holds the input_ids ('loss' is refused)",
    "eval_on_start": "one evaluation before the first training step",
    "fp16": "ms_ptuning.run maps it to --mixed_precision fp16 (the Trainer alone refuses it)",
    "bf16": "ms_ptuning.run maps it to --mixed_precision bf16 (the Trainer alone refuses it)",
    "gradient_checkpointing": "graph backend: every native backbone layer's activations are recomputed in the "
                              "backward pass (MindSpore's Cell.recompute, native/recompute.py); the eager "
                              "engine refuses it",
    "_n_gpu": "not a flag: TrainingArguments computes it",
}

USE_ADAMW = "the step engines implement torch's AdamW and Adam (optim adam_l2) only; leave it unset"
NO_HUB = "ms_ptuning never pushes to the Hugging Face Hub; copy output_dir/adapter yourself"
NO_DATALOADER = "there is no torch DataLoader: batches are numpy slices of in-memory columns; leave it unset"
USE_MSRUN = "data parallelism is MindSpore's msrun (scripts/run_distributed.sh); leave it unset"
USE_DEVICE = "the device is MindSpore's: --device_target CPU|GPU|Ascend (ms_ptuning.run)"
USE_PRECISION = "use --mixed_precision no|fp16|bf16 (ms_ptuning.run)"
REFUSED = {
    "per_gpu_train_batch_size": "deprecated by HF: use per_device_train_batch_size",
    "per_gpu_eval_batch_size": "deprecated by HF: use per_device_eval_batch_size",
    "torch_empty_cache_steps": "MindSpore manages its memory pool itself; leave it unset",
    "save_on_each_node": "rank 0 alone writes checkpoints, which every worker can read on a shared filesystem",
    "save_only_model": "checkpoints must hold the AdamW state for an exact resume; use trainer.save_model() or "
                       "output_dir/adapter for the weights alone",
    "no_cuda": USE_DEVICE, "use_cpu": USE_DEVICE, "use_mps_device": USE_DEVICE,
    "jit_mode_eval": "torch.jit does not exist here; compiled steps are the graph step engine",
    "use_ipex": "Intel Extension for PyTorch does not apply to MindSpore",
    "fp16_opt_level": "apex is not used: " + USE_PRECISION, "half_precision_backend": USE_PRECISION,
    "bf16_full_eval": USE_PRECISION, "fp16_full_eval": USE_PRECISION,
    "tf32": "TF32 is a CUDA matmul mode of torch; MindSpore's GPU kernels choose their own",
    "local_rank": USE_MSRUN, "ddp_backend": USE_MSRUN, "ddp_find_unused_parameters": USE_MSRUN,
    "ddp_bucket_cap_mb": USE_MSRUN, "ddp_broadcast_buffers": USE_MSRUN, "ddp_timeout": USE_MSRUN,
    "tpu_num_cores": "no TPU support", "tpu_metrics_debug": "no TPU support",
    "debug": "torch/XLA debug options do not apply; leave it unset",
    "dataloader_num_workers": NO_DATALOADER, "dataloader_prefetch_factor": NO_DATALOADER,
    "dataloader_pin_memory": NO_DATALOADER, "dataloader_persistent_workers": NO_DATALOADER,
    "past_index": "no model here returns mems/past for the next batch (Transformer-XL style)",
    "ignore_data_skip": "a resume always continues the exact data order; start a new run instead",
    "fsdp": USE_MSRUN, "fsdp_min_num_params": USE_MSRUN, "fsdp_config": USE_MSRUN,
    "fsdp_transformer_layer_cls_to_wrap": USE_MSRUN,
    "accelerator_config": "accelerate is not used; leave it unset",
    "parallelism_config": USE_MSRUN, "deepspeed": USE_MSRUN,
    "label_smoothing_factor": "the heads compute their own loss; smoothing it is not implemented",
    "optim_args": USE_ADAMW, "adafactor": USE_ADAMW,
    "group_by_length": "batches are drawn in a seeded random order; length grouping is not implemented",
    "length_column_name": "only used by group_by_length, which is refused",
    "skip_memory_metrics": "memory metrics are not collected; see benchmarks/ for memory",
    "use_legacy_prediction_loop": "there is one evaluation loop",
    "push_to_hub": NO_HUB, "hub_model_id": NO_HUB, "hub_strategy": NO_HUB, "hub_token": NO_HUB,
    "hub_private_repo": NO_HUB, "hub_always_push": NO_HUB, "hub_revision": NO_HUB,
    "push_to_hub_model_id": NO_HUB, "push_to_hub_organization": NO_HUB, "push_to_hub_token": NO_HUB,
    "gradient_checkpointing_kwargs": "torch.utils.checkpoint options do not apply: gradient_checkpointing "
                                     "recomputes whole layers (MindSpore's Cell.recompute)",
    "eval_do_concat_batches": "evaluation always concatenates batches (padding widths with -100)",
    "fp16_backend": "deprecated by HF: " + USE_PRECISION,
    "mp_parameters": "SageMaker model parallelism does not apply",
    "auto_find_batch_size": "set per_device_train_batch_size yourself (no out-of-memory retry)",
    "torchdynamo": "torch.compile does not apply; compiled steps are the graph step engine",
    "torch_compile": "torch.compile does not apply; compiled steps are the graph step engine",
    "torch_compile_backend": "torch.compile does not apply", "torch_compile_mode": "torch.compile does not apply",
    "ray_scope": "hyperparameter search is scripts/hparam_search.sh, not Ray Tune",
    "include_tokens_per_second": "token throughput is not measured by the Trainer (summarization reports it)",
    "include_num_input_tokens_seen": "input tokens are not counted",
    "neftune_noise_alpha": "NEFTune embedding noise is not implemented",
    "optim_target_modules": USE_ADAMW,
    "batch_eval_metrics": "compute_metrics sees the whole evaluation set at once",
    "use_liger_kernel": "Liger kernels are CUDA/Triton", "liger_kernel_config": "Liger kernels are CUDA/Triton",
    "eval_use_gather_object": "evaluation outputs are gathered as arrays",
    "average_tokens_across_devices": "the loss is averaged per example over the global batch",
}

SUPPORTED_REPORTS = ("none", "tensorboard", "all")


def value(args, name):
    """An enum field as its string value, others as they are."""
    found = getattr(args, name, None)
    return getattr(found, "value", found)


def refused_settings(args) -> list:
    """'name=value: what to use instead' for every refused field set to a non-default value."""
    baseline = TrainingArguments(output_dir=args.output_dir)
    problems = [f"{name}={value(args, name)!r}: {reason}" for name, reason in REFUSED.items()
                if value(args, name) != value(baseline, name)]
    if value(args, "optim") not in OPTIMIZERS:
        problems.append(f"optim={value(args, 'optim')!r}: supported are {', '.join(OPTIMIZERS)}")
    unknown_reports = [name for name in args.report_to or [] if name not in SUPPORTED_REPORTS]
    if unknown_reports:
        problems.append(f"report_to={unknown_reports}: supported are {', '.join(SUPPORTED_REPORTS)}")
    if "loss" in (args.include_for_metrics or []):
        problems.append("include_for_metrics='loss': per-example losses are not collected; use 'inputs' or none")
    return problems + schedule_problems(args)


def schedule_problems(args) -> list:
    scheduler = value(args, "lr_scheduler_type")
    if scheduler not in SCHEDULES:
        return [f"lr_scheduler_type={scheduler!r}: supported are {', '.join(SCHEDULES)}"]
    gamma = getattr(args, "lr_decay_per_epoch", None)
    if gamma is None:
        return []
    problems = [] if 0.0 < gamma <= 1.0 else [f"lr_decay_per_epoch={gamma}: must be in (0, 1]"]
    if args.warmup_steps or args.warmup_ratio:
        problems.append("warmup_steps/warmup_ratio with lr_decay_per_epoch: the per-epoch decay (THUDM's "
                        "ExponentialLR) has no warmup; drop one of them")
    if scheduler != "linear":
        problems.append(f"lr_scheduler_type={scheduler!r} with lr_decay_per_epoch: the decay replaces the "
                        "schedule; drop one of them")
    return problems


def check_arguments(args) -> None:
    """Raise one ValueError naming every refused setting. fp16/bf16 pass only as ms_ptuning.run's spellings
    of --mixed_precision (`resolve_precision` made them agree), because the Trainer does not convert the model."""
    problems = refused_settings(args)
    for name in ("fp16", "bf16"):
        if getattr(args, name) and value(args, "mixed_precision") != name:
            problems.append(f"{name}=True: the Trainer does not convert the model; use ms_ptuning.run "
                            f"--{name} (= --mixed_precision {name}), or build the head with compute_dtype="
                            f"training.precision.mixed_precision_dtype('{name}') and pass "
                            f"loss_scaler=default_loss_scaler('{name}')")
    if problems:
        raise ValueError("TrainingArguments not supported by ms_ptuning:\n  " + "\n  ".join(problems))


def resolve_precision(args) -> None:
    """ms_ptuning.run: --fp16/--bf16 are spellings of --mixed_precision fp16/bf16; a conflict is an error."""
    asked = [name for name in ("fp16", "bf16") if getattr(args, name)]
    if len(asked) > 1:
        raise ValueError("--fp16 and --bf16 are both set; pass one --mixed_precision")
    if asked and args.mixed_precision not in ("no", asked[0]):
        raise ValueError(f"--{asked[0]} conflicts with --mixed_precision {args.mixed_precision}")
    if asked:
        args.mixed_precision = asked[0]

