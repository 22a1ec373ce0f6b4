"""Sequence classification variants beyond the head × backbone × mode grid: prefix reparameterization,
the LSTM and MLP prompt encoders, head-only fine-tuning and the regression / multi-label losses, against the
torch reference on both backends (eager, graph) and graph against eager on the same weights. The embedding
prompt encoder is the grid's prompt mode (test_heads_parity.py)."""

import numpy as np
import pytest

from ms_ptuning.config import PTuningConfig
from ms_ptuning.parity import compare_many
from tiny_backbones import tiny_config

VARIANTS = {
    "prefix_projection": dict(mode="prefix", prefix_projection=True, prefix_hidden_size=32),
    "prompt_lstm": dict(mode="prompt", prompt_encoder_type="lstm"),
    "prompt_mlp": dict(mode="prompt", prompt_encoder_type="mlp"),
    "regression": dict(mode="prefix", num_labels=1, problem_type="regression"),
    "multi_label": dict(mode="prefix", num_labels=3, problem_type="multi_label_classification"),
    "finetune_head_only": dict(mode="finetune", freeze_backbone=True),
}
# BERT's native Cells also run RoBERTa (its position ids and embeddings are held to torch in test_heads_parity.py);
# these variants are the encoders' and the losses', the same on both
CASES = [("bert", variant) for variant in VARIANTS]
BACKENDS = ("eager", "graph", "graph_vs_eager")


def batch_for(variant: str) -> dict:
    rng = np.random.default_rng(1)
    mask = np.ones((3, 6), np.int64)
    mask[2, 4:] = 0
    batch = {"input_ids": rng.integers(3, 100, (3, 6)).astype(np.int64), "attention_mask": mask}
    if variant == "regression":
        batch["labels"] = np.array([0.5, -1.0, 2.0], np.float32)
    elif variant == "multi_label":
        batch["labels"] = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], np.int64)
    else:
        batch["labels"] = np.array([0, 1, 1], np.int64)
    return batch


@pytest.fixture(scope="module")
def parity():
    cases = [("sequence_classification", tiny_config(backbone),
              PTuningConfig(pre_seq_len=3, prefix_dropout=0.0, classifier_dropout=0.0, **VARIANTS[variant]),
              batch_for(variant)) for backbone, variant in CASES]
    return dict(zip(CASES, compare_many(cases, ("eager", "graph"))))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("backbone,variant", CASES)
def test_matches_torch_reference(parity, backbone, variant, backend):
    """`backend` against torch, or graph_vs_eager: the graph's numbers against the eager ones."""
    result = parity[(backbone, variant)][backend]
    assert result["logits_max_abs"] <= 1e-5
    assert result["loss_abs"] <= 1e-5
    assert result["grad_max_rel"] <= 1e-4, result["grad_worst_param"]
