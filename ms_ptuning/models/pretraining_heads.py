"""BERT pre-training heads as MindSpore Cells: masked-LM head, next-sentence head and `BertForPreTraining`.

Parameter names equal Hugging Face's (`cls.predictions.transform.dense.weight`, `cls.predictions.bias`,
`cls.seq_relationship.weight`, ...), so the `cls.*` tensors of an HF checkpoint load as they are. The MLM
decoder is tied to the backbone's word embeddings: it owns no weight and receives the embedding matrix at
call time, which is what keeps it tied while the embeddings change (fine-tuning) or are loaded.

Tensor code is `mindspore.ops` only (losses from `ms_ptuning.losses`), so the heads compile in GRAPH_MODE on
the native backbones and run op by op on the mindnlp ones alike. The (B·T, V) decoder avoids what keeps
extra output-sized buffers alive in compiled CPU graphs (see `native.functional`): it is one MatMul against
the embeddings untransposed plus BiasAdd on a 2-D view; the activation is the native backbones' own Cell.
"""

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..config import PTuningConfig
from ..layers import LayerNorm, Linear
from ..losses import IGNORE_INDEX, cross_entropy
from ..native.functional import ACTIVATIONS
from ..weights import assign_weights, named_weights
from .base import PTuningHead

_MATMUL_NT = ops.MatMul(transpose_b=True)
_BIAS_ADD = ops.BiasAdd()


def activation(name: str) -> nn.Cell:
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported by the pre-training heads; "
                         f"known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def tied_decoder(hidden_states, word_embeddings, bias):
    """hidden (..., H) · E (V, H)ᵀ + bias (V,) → (..., V)."""
    leading = hidden_states.shape[:-1]
    flat = ops.reshape(hidden_states, (-1, hidden_states.shape[-1]))
    return ops.reshape(_BIAS_ADD(_MATMUL_NT(flat, word_embeddings), bias), leading + (word_embeddings.shape[0],))


class BertPredictionHeadTransform(nn.Cell):
    """dense Linear(H, H) → activation (config.hidden_act) → LayerNorm."""

    def __init__(self, config):
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size, std=config.initializer_range)
        self.act = activation(config.hidden_act)
        self.LayerNorm = LayerNorm(config.hidden_size, config.layer_norm_eps)

    def construct(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Cell):
    """transform → hidden · Eᵀ + bias, E the (V, H) word embeddings passed in (the tied decoder)."""

    def __init__(self, config):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = Parameter(Tensor(np.zeros(config.vocab_size, dtype=np.float32)), name="bias")

    def construct(self, hidden_states, word_embeddings):
        # hidden_states (..., H), word_embeddings (V, H) -> (..., V)
        return tied_decoder(self.transform(hidden_states), word_embeddings, self.bias)


class BertOnlyMLMHead(nn.Cell):
    """What `BertForMaskedLM` keeps under `cls`: the prediction head alone."""

    def __init__(self, config):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def construct(self, sequence_output, word_embeddings):
        return self.predictions(sequence_output, word_embeddings)


class BertPreTrainingHeads(nn.Cell):
    """MLM head on every position plus the next-sentence classifier Linear(H, 2) on the pooled output."""

    def __init__(self, config):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = Linear(config.hidden_size, 2, std=config.initializer_range)

    def construct(self, sequence_output, pooled_output, word_embeddings):
        # (B, T, H), (B, H) -> (B, T, V), (B, 2)
        return self.predictions(sequence_output, word_embeddings), self.seq_relationship(pooled_output)


def pretraining_loss(prediction_scores, seq_relationship_score, labels=None, next_sentence_label=None):
    """Mean MLM cross-entropy over positions whose label is not -100, plus mean NSP cross-entropy.

    Hugging Face adds the two when both labels are given; here each term is also usable alone (MLM-only
    corpora), and the sum of both equals Hugging Face's `total_loss`. None when no label is given.
    """
    loss = None
    if labels is not None:
        vocab_size = prediction_scores.shape[-1]
        loss = cross_entropy(ops.reshape(prediction_scores, (-1, vocab_size)), ops.reshape(labels, (-1,)),
                             IGNORE_INDEX)
    if next_sentence_label is not None:
        nsp = cross_entropy(ops.reshape(seq_relationship_score, (-1, 2)), ops.reshape(next_sentence_label, (-1,)))
        loss = nsp if loss is None else ops.add(loss, nsp)
    return loss


class BertForPreTraining(PTuningHead):
    """Backbone (with the pooler, for NSP) + `BertPreTrainingHeads`, in any `PTuningConfig` mode.

    `construct` returns `(loss or None, (prediction_scores (B, T, V), seq_relationship_score (B, 2)))`.
    """

    head_name = "bert_pretraining"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype)
        if self.backbone.pooler is None:
            raise ValueError("the backbone has no pooler; the next-sentence head needs one")
        self.cls = BertPreTrainingHeads(self.backbone.config)
        if config.mode != "finetune":
            freeze_cells(self.cls)

    def construct(self, input_ids, attention_mask, token_type_ids=None, labels=None, next_sentence_label=None):
        sequence_output, pooled_output = self.encoder(input_ids, attention_mask, token_type_ids)
        prediction_scores, seq_relationship_score = self.cls(sequence_output, pooled_output,
                                                             self.backbone.word_embedding_weight)
        loss = pretraining_loss(prediction_scores, seq_relationship_score, labels, next_sentence_label)
        return loss, (prediction_scores, seq_relationship_score)


def freeze_cells(cell) -> None:
    for parameter in cell.get_parameters():
        parameter.requires_grad = False


def load_pretrained_heads(model, arrays: dict, source: str = "checkpoint") -> None:
    """Copy the `cls.*` tensors of a Hugging Face BERT checkpoint (BertForPreTraining / BertForMaskedLM)
    into `model`'s head Cells; the backbone is loaded separately (`ms_ptuning.backbones.load_backbone`).

    The checkpoint's decoder weight and decoder bias, when present, are the tied copies of the word
    embeddings and of `cls.predictions.bias`; they are checked, not loaded, because an untied decoder
    cannot be represented here.
    """
    head_names = sorted(name for name in named_weights(model) if name.startswith("cls."))
    missing = [name for name in head_names if name not in arrays]
    if missing:
        raise ValueError(f"{source} lacks head weights {missing}")
    decoder_weight = arrays.get("cls.predictions.decoder.weight")
    if decoder_weight is not None:
        embeddings = model.backbone.word_embedding_weight.asnumpy()
        if decoder_weight.shape != embeddings.shape or not np.array_equal(decoder_weight, embeddings):
            raise ValueError(f"{source}: cls.predictions.decoder.weight is not tied to the word embeddings "
                             "(load the backbone from the same checkpoint first)")
    decoder_bias = arrays.get("cls.predictions.decoder.bias")
    if decoder_bias is not None and not np.array_equal(decoder_bias, arrays["cls.predictions.bias"]):
        raise ValueError(f"{source}: cls.predictions.decoder.bias differs from cls.predictions.bias")
    assign_weights(model, {name: arrays[name] for name in head_names}, strict=False, source=source)

