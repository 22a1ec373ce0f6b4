"""How many steps a run takes and its learning-rate schedule, from the TrainingArguments and the data size."""

import math
from dataclasses import dataclass
from typing import Callable

from .schedules import lr_factor_fn


@dataclass(frozen=True)
class TrainingPlan:
    steps_per_epoch: int  # optimizer steps; the last one of an epoch may take fewer micro-batches
    total_steps: int
    num_epochs: int
    examples_per_step: int  # global batch x accumulation, for throughput figures
    lr_factor: Callable[[int], float]  # applied optimizer steps so far → multiplier of learning_rate

    @classmethod
    def of(cls, args, num_examples: int, world_size: int) -> "TrainingPlan":
        global_batch = args.per_device_train_batch_size * world_size
        num_batches = num_examples // global_batch if args.dataloader_drop_last else math.ceil(num_examples / global_batch)
        if num_batches == 0:
            raise ValueError(f"the train dataset has {num_examples} examples, fewer than one batch of {global_batch} "
                             "with dataloader_drop_last")
        steps_per_epoch = math.ceil(num_batches / args.gradient_accumulation_steps)
        total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
        lr_factor = lr_factor_fn(args.lr_scheduler_type, args.get_warmup_steps(total), total, args.learning_rate,
                                 **(args.lr_scheduler_kwargs or {}))
        return cls(steps_per_epoch, total, math.ceil(total / steps_per_epoch),
                   global_batch * args.gradient_accumulation_steps, lr_factor)
