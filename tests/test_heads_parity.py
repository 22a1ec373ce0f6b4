"""Every task head × encoder family × mode against the torch reference, plus hand-computed head losses.

BERT and RoBERTa run on both backends: eager (the mindnlp model) and graph (the native Cells, loss and
gradients compiled as one GRAPH_MODE graph), each against torch, and graph against eager on the same
weights by the same bounds. DeBERTa has no native backbone: eager only. One reference process serves the
48 cases and runs ahead of this side (`compare_many`).
"""

import numpy as np
import pytest

from ms_ptuning.backend import torch
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import MODES, PTuningConfig
from ms_ptuning.models import HEADS
from ms_ptuning.models.context_pooler import ContextPooler
from ms_ptuning.parity import INITIALIZER_RANGE, SHIFT_INVARIANT_LIMIT, compare_many, split_gradients
from ms_ptuning.weights import trainable_weights
from tiny_backbones import SIZES, tiny_config

TASK_HEADS = ("sequence_classification", "token_classification", "question_answering", "multiple_choice")
BACKBONES = ("bert", "roberta", "deberta", "deberta-v2")
NATIVE = ("bert", "roberta")  # backbones with a graph backend
CASES = [(head, backbone, mode) for head in TASK_HEADS for backbone in BACKBONES for mode in MODES]
MEASURED = [(head, backbone, mode, backend) for head, backbone, mode in CASES
            for backend in (("eager", "graph", "graph_vs_eager") if backbone in NATIVE else ("eager",))]
BATCH, LENGTH, CHOICES, NUM_LABELS = 2, 7, 2, 3


def make_batch(head: str, backbone: str, seed: int = 0) -> dict:
    """Padded inputs (the second example has 2 padding tokens) and labels exercising every ignore rule."""
    rng = np.random.default_rng(seed)
    mask = np.ones((BATCH, LENGTH), np.int64)
    mask[1, 5:] = 0
    shape = (BATCH, CHOICES, LENGTH) if head == "multiple_choice" else (BATCH, LENGTH)
    batch = {"input_ids": rng.integers(2, 100, shape).astype(np.int64),
             "attention_mask": np.broadcast_to(mask[:, None], shape).copy() if head == "multiple_choice" else mask}
    if backbone == "bert":
        token_types = np.zeros(shape, np.int64)
        token_types[..., 4:] = 1
        batch["token_type_ids"] = token_types
    if head in ("sequence_classification", "multiple_choice"):
        batch["labels"] = np.array([0, 1], np.int64)
    elif head == "token_classification":
        labels = rng.integers(0, NUM_LABELS, (BATCH, LENGTH)).astype(np.int64)
        labels[0, 0] = -100  # a real token without a label
        labels[1, 6] = -100  # padding, labelled or not, never counts: labels[1, 5] stays a valid class
        batch["labels"] = labels
    else:  # the second example's start lies beyond the sequence (answer truncated away): ignored
        batch.update(start_positions=np.array([1, 99], np.int64), end_positions=np.array([3, 2], np.int64))
    return batch


def ptuning_config(mode: str) -> PTuningConfig:
    # prompt mode as the P-tuning v2 repository runs it: a shallow embedding table (the LSTM/MLP encoders
    # are head-independent and have their own parity tests)
    return PTuningConfig(mode=mode, pre_seq_len=4, num_labels=NUM_LABELS, prompt_encoder_type="embedding")


@pytest.fixture(scope="module")
def parity():
    measured = compare_many([(head, tiny_config(backbone, initializer_range=INITIALIZER_RANGE), ptuning_config(mode),
                              make_batch(head, backbone)) for head, backbone, mode in CASES],
                            [("eager", "graph") if backbone in NATIVE else ("eager",) for _, backbone, _ in CASES])
    return dict(zip(CASES, measured))


@pytest.mark.parametrize("head,backbone,mode,backend", MEASURED)
def test_parity_with_torch_reference(parity, head, backbone, mode, backend):
    """`backend` against torch, or graph_vs_eager: the graph's numbers against the eager ones."""
    result = parity[(head, backbone, mode)][backend]
    assert result["logits_max_abs"] <= 1e-5
    assert result["loss_abs"] <= 1e-5
    worst, relative, invariant = split_gradients(result, head, SIZES["num_hidden_layers"])
    assert relative <= 1e-4, worst
    assert invariant <= SHIFT_INVARIANT_LIMIT  # |g_ms − g_torch| ≤ 1e-4 · the largest gradient of any tensor
    trains_backbone = any(".backbone." in name for name in result["grad_rel"])
    assert trains_backbone == (mode == "finetune")


def build(head: str, backbone: str, mode: str):
    torch.manual_seed(0)
    np.random.seed(0)
    model = HEADS[head](build_backbone(tiny_config(backbone)), ptuning_config(mode))
    model.set_train(False)
    return model


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_token_classification_loss_ignores_prefix_padding_and_unlabelled_tokens():
    batch = make_batch("token_classification", "deberta")
    loss, logits = build("token_classification", "deberta", "prefix")(
        **{name: torch.tensor(value) for name, value in batch.items()})
    logits = logits.asnumpy()
    assert logits.shape == (BATCH, LENGTH, NUM_LABELS)  # real tokens only: no prefix positions
    counted = (batch["attention_mask"] == 1) & (batch["labels"] != -100)
    assert counted.sum() == 11 and not counted[1, 5]  # padding with a valid label is still ignored
    picked = np.take_along_axis(log_softmax(logits), np.maximum(batch["labels"], 0)[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(loss.asnumpy()), -picked[counted].mean(), rtol=1e-5)


def test_question_answering_loss_ignores_positions_beyond_the_sequence():
    batch = make_batch("question_answering", "roberta")
    loss, (start_logits, end_logits) = build("question_answering", "roberta", "prefix")(
        **{name: torch.tensor(value) for name, value in batch.items()})
    start, end = log_softmax(start_logits.asnumpy()), log_softmax(end_logits.asnumpy())
    assert start.shape == end.shape == (BATCH, LENGTH)
    expected = (-start[0, 1] - (end[0, 3] + end[1, 2]) / 2) / 2  # example 1's start is clamped to T, ignored
    np.testing.assert_allclose(float(loss.asnumpy()), expected, rtol=1e-5)


def test_multiple_choice_scores_each_choice_as_its_own_sequence():
    batch = make_batch("multiple_choice", "deberta-v2")
    model = build("multiple_choice", "deberta-v2", "prefix")
    _, scores = model(**{name: torch.tensor(value) for name, value in batch.items() if name != "labels"})
    second_choice = {name: torch.tensor(np.ascontiguousarray(value[:, 1:2])) for name, value in batch.items()
                     if name != "labels"}
    _, alone = model(**second_choice)
    assert scores.shape == (BATCH, CHOICES)
    np.testing.assert_allclose(alone.asnumpy()[:, 0], scores.asnumpy()[:, 1], atol=1e-6)


def test_deberta_sequence_heads_pool_with_a_trainable_context_pooler():
    model = build("sequence_classification", "deberta", "prefix")
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= set(trainable_weights(model))


def test_context_pooler_rejects_unsupported_activation():
    with pytest.raises(ValueError, match="pooler_hidden_act='swish'"):
        ContextPooler(tiny_config("deberta", pooler_hidden_act="swish"))
