"""The head registry: `HEADS` maps a head's name (tasks' `head`, adapter configs' "head") to its class.

Every head follows the contract of `base.PTuningHead`: `Head(backbone, config, compute_dtype=None)`, the
prompted backbone under `head.encoder`, the PTuningConfig read as `head.config`.
"""

from .base import PTuningHead
from .causal_lm import CausalLM
from .lama_probe import LamaProbe
from .multiple_choice import MultipleChoice
from .pretraining_heads import BertForPreTraining
from .question_answering import QuestionAnswering
from .sequence_classification import SequenceClassifier
from .token_classification import TokenClassifier

HEADS = {head.head_name: head for head in (SequenceClassifier, TokenClassifier, QuestionAnswering, MultipleChoice,
                                           CausalLM, BertForPreTraining, LamaProbe)}

__all__ = ["HEADS", "PTuningHead", "CausalLM", "LamaProbe", "MultipleChoice", "BertForPreTraining",
           "QuestionAnswering", "SequenceClassifier", "TokenClassifier"]
