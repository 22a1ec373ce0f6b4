"""Task heads; each wraps its backbone in the shared `PromptedBackbone`."""

from .causal_lm import CausalLM
from .pretraining_heads import BertForPreTraining
from .multiple_choice import MultipleChoice
from .question_answering import QuestionAnswering
from .sequence_classification import SequenceClassifier
from .token_classification import TokenClassifier

HEADS = {"sequence_classification": SequenceClassifier, "causal_lm": CausalLM}


def lama_probe(backbone, config):
    # imported on use: ms_ptuning.lama.model imports this package (pretraining_heads), a top import is circular
    from ..lama.model import LamaProbe

    return LamaProbe(backbone, config)


HEADS.update({"bert_pretraining": BertForPreTraining, "lama": lama_probe})
HEADS.update({"token_classification": TokenClassifier, "question_answering": QuestionAnswering,
              "multiple_choice": MultipleChoice})
