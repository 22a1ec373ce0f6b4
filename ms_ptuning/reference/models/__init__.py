"""Reference head registry, the mirror of `ms_ptuning.models.HEADS`."""

from .causal_lm import CausalLM
from .lama_probe import LamaProbe
from .multiple_choice import MultipleChoice
from .pretraining_heads import BertForPreTraining
from .question_answering import QuestionAnswering
from .sequence_classification import SequenceClassifier
from .token_classification import TokenClassifier

HEADS = {head.head_name: head for head in (SequenceClassifier, TokenClassifier, QuestionAnswering, MultipleChoice,
                                           CausalLM, BertForPreTraining, LamaProbe)}
