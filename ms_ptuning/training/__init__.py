"""Training: AdamW, Hugging Face learning-rate schedules, checkpoints and the Trainer loop."""

from .. import backend  # noqa: F401  (mindnlp must patch transformers before it is imported)
from transformers import TrainingArguments

from .trainer import Trainer

TrainingArgs = TrainingArguments

__all__ = ["Trainer", "TrainingArgs", "TrainingArguments"]
