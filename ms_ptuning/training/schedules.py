"""Learning-rate factor per optimizer step, by Hugging Face `lr_scheduler_type`.

The factor functions are transformers' own (pure Python), so every schedule is exactly the one users get
from `transformers.get_scheduler` with the reference's PyTorch optimizer.
"""

from functools import partial

from transformers import optimization

SCHEDULES = {
    "linear": optimization._get_linear_schedule_with_warmup_lr_lambda,
    "cosine": optimization._get_cosine_schedule_with_warmup_lr_lambda,
    "cosine_with_restarts": optimization._get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda,
    "polynomial": optimization._get_polynomial_decay_schedule_with_warmup_lr_lambda,
    "constant": optimization._get_constant_lambda,
    "constant_with_warmup": optimization._get_constant_schedule_with_warmup_lr_lambda,
}


def lr_factor_fn(name: str, num_warmup_steps: int, num_training_steps: int, base_lr: float, **kwargs):
    """step → multiplier of the base learning rate. kwargs: `num_cycles` (cosine variants),
    `power` and `lr_end` (polynomial), as in `TrainingArguments.lr_scheduler_kwargs`."""
    name = getattr(name, "value", name)
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler_type {name!r}; supported: {', '.join(SCHEDULES)}")
    if name == "constant":
        return SCHEDULES[name]
    if name == "constant_with_warmup":
        return partial(SCHEDULES[name], num_warmup_steps=num_warmup_steps)
    if name == "polynomial":
        return partial(SCHEDULES[name], num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
                       lr_init=base_lr, lr_end=kwargs.get("lr_end", 1e-7), power=kwargs.get("power", 1.0))
    steps = {"num_warmup_steps": num_warmup_steps, "num_training_steps": num_training_steps}
    if name == "linear":
        return partial(SCHEDULES[name], **steps)
    # cosine variants, with transformers' defaults: half a cosine wave, or one hard restart cycle
    return partial(SCHEDULES[name], **steps, num_cycles=kwargs.get("num_cycles", 0.5 if name == "cosine" else 1))

