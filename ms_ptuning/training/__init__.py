"""Training: the Trainer loop (Hugging Face's contract) on a step engine, AdamW, HF schedules, checkpoints."""

from transformers import TrainingArguments

from .callbacks import EarlyStoppingCallback
from .eager_steps import EagerSteps
from .evaluation import DatasetMetrics
from .graph_steps import GraphSteps
from .steps import StepResult
from .trainer import Trainer

TrainingArgs = TrainingArguments

__all__ = ["DatasetMetrics", "EagerSteps", "EarlyStoppingCallback", "GraphSteps", "StepResult", "Trainer",
           "TrainingArgs", "TrainingArguments"]
