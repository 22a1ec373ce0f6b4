"""Task heads; each wraps its backbone in the shared `PromptedBackbone`."""

from .sequence_classification import SequenceClassifier

HEADS = {"sequence_classification": SequenceClassifier}
