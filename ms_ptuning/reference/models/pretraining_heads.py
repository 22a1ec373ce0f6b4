"""Reference BERT pre-training model: Hugging Face's own torch `BertPreTrainingHeads` on the reference
prompted backbone, its decoder tied to the word embeddings as `BertForPreTraining.tie_weights` does."""

import torch
from torch.nn import functional as F
from transformers.models.bert.modeling_bert import BertPreTrainingHeads

from ...config import PTuningConfig
from ..layers import normal_linears
from .base import PTuningHead


def randomize_head_constants(predictions) -> None:
    """HF initialises the output bias and LayerNorm to zeros/ones; random values let parity see them used."""
    with torch.no_grad():
        predictions.bias.normal_(0.0, 0.5)
        predictions.transform.LayerNorm.weight.normal_(1.0, 0.2)
        predictions.transform.LayerNorm.bias.normal_(0.0, 0.2)


def freeze(module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad = False


class BertForPreTraining(PTuningHead):
    head_name = "bert_pretraining"

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__(backbone, config)
        self.cls = BertPreTrainingHeads(self.backbone.config)
        normal_linears(self.cls, self.init_std)
        self.cls.predictions.decoder.weight = self.backbone.word_embedding_weight
        randomize_head_constants(self.cls.predictions)
        if config.mode != "finetune":
            freeze(self.cls)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, next_sentence_label=None):
        sequence_output, pooled_output = self.encoder(input_ids, attention_mask, token_type_ids)
        prediction_scores, seq_relationship_score = self.cls(sequence_output, pooled_output)
        terms = []
        if labels is not None:
            terms.append(F.cross_entropy(prediction_scores.view(-1, prediction_scores.shape[-1]),
                                         labels.view(-1).long()))
        if next_sentence_label is not None:
            terms.append(F.cross_entropy(seq_relationship_score.view(-1, 2), next_sentence_label.view(-1).long()))
        loss = sum(terms) if terms else None
        return loss, (prediction_scores, seq_relationship_score)
