"""Initialisation as THUDM's code runs it, on both sides of the parity pair.

THUDM's P-tuning v2 modules are missing from the checkpoint, so transformers' `from_pretrained` initialises
them with `_init_weights`: Linear N(0, initializer_range) with zero bias, Embedding N(0, initializer_range).
That holds for the prefix table and MLP, the v2 prompt table and the heads. P-tuning v1's prompt encoder
(LSTM/MLP, used by LAMA) keeps torch's defaults. A non-default initializer_range shows the backbone's value
is used, not a constant; the torch reference's own initialisation (its weights as it writes them) is checked
with the same rules.
"""

import os
import tempfile

import numpy as np
import pytest

from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.models import HEADS
from ms_ptuning.parity import load_case, run_reference, write_case
from ms_ptuning.weights import to_numpy, trainable_weights
from tiny_backbones import tiny_config

RANGE = 0.05  # initializer_range of the backbones below (Hugging Face's default is 0.02)
H = 64
CASES = {  # name → (head, backbone type, PTuningConfig)
    "prefix": ("sequence_classification", "bert", PTuningConfig(mode="prefix", pre_seq_len=16, num_labels=4)),
    "prefix_mlp": ("token_classification", "roberta",
                   PTuningConfig(mode="prefix", pre_seq_len=16, prefix_projection=True, prefix_hidden_size=128)),
    "prompt_table": ("question_answering", "bert", PTuningConfig(mode="prompt", pre_seq_len=16)),
    "prompt_lstm": ("multiple_choice", "deberta", PTuningConfig(mode="prompt", pre_seq_len=16,
                                                                prompt_encoder_type="lstm")),
}


def check_initialisation(weights: dict, v1_prompts: bool) -> list:
    """The names checked; fails on the first tensor that breaks its rule. `v1_prompts`: an LSTM/MLP prompt
    encoder, whose table is P-tuning v1's N(0, 1)."""
    checked = []
    for name, value in weights.items():
        if "backbone." in name:
            continue
        if name.endswith("bias") and "lstm" not in name and "mlp" not in name:
            assert np.all(value == 0), name
        elif "lstm" in name or "mlp" in name:  # torch's default: U(-1/√fan, 1/√fan), fan = hidden (LSTM) or in
            bound = 1 / np.sqrt(H // 2 if "lstm" in name else value.shape[-1] if value.ndim == 2 else H)
            assert np.abs(value).max() <= bound and np.abs(value).max() > 0.9 * bound and value.std() > bound / 2.5, name
        elif name == "encoder.prompt_encoder.embedding.weight" and v1_prompts:
            assert 0.9 < value.std() < 1.1, name  # P-tuning v1's table: N(0, 1)
        else:  # every other table and Linear weight of the v2 modules and heads
            assert abs(value.mean()) < 0.2 * RANGE and 0.75 * RANGE < value.std() < 1.25 * RANGE, (name, value.std())
            assert np.abs(value).max() < 6 * RANGE, name
        checked.append(name)
    return checked


def build(head, backbone_type, ptuning):
    return HEADS[head](build_backbone(tiny_config(backbone_type, initializer_range=RANGE)), ptuning)


@pytest.mark.parametrize("case", sorted(CASES))
def test_mindspore_side_starts_as_thudm(case):
    checked = check_initialisation(to_numpy(trainable_weights(build(*CASES[case]))), case == "prompt_lstm")
    expected = {"prefix": {"classifier.weight", "classifier.bias", "encoder.prefix_encoder.embedding.weight"},
                "prefix_mlp": {"classifier.weight", "classifier.bias", "encoder.prefix_encoder.embedding.weight",
                               *(f"encoder.prefix_encoder.transform.{i}.{p}" for i in (0, 1) for p in ("weight", "bias"))},
                "prompt_table": {"qa_outputs.weight", "qa_outputs.bias", "encoder.prompt_encoder.embedding.weight"},
                "prompt_lstm": {"classifier.weight", "classifier.bias", "pooler.dense.weight", "pooler.dense.bias"}}
    assert expected[case] <= set(checked)
    if case == "prompt_lstm":
        assert sum("lstm" in name for name in checked) == 16 and sum("mlp" in name for name in checked) == 4


def test_torch_reference_starts_as_thudm():
    """The reference initialises each model itself (from its seed) and writes the weights it used."""
    with tempfile.TemporaryDirectory(prefix="ms_ptuning_init_") as root:
        workdirs = {case: os.path.join(root, case) for case in CASES}
        for case, workdir in workdirs.items():
            os.mkdir(workdir)
            head, backbone_type, ptuning = CASES[case]
            write_case(workdir, head, tiny_config(backbone_type, initializer_range=RANGE), ptuning,
                       batch_for(head), seed=1)
        run_reference(*workdirs.values())
        for case, workdir in workdirs.items():
            head, backbone_type, ptuning = CASES[case]
            model, _, _ = load_case(workdir, head, tiny_config(backbone_type, initializer_range=RANGE), ptuning)
            assert len(check_initialisation(to_numpy(trainable_weights(model)), case == "prompt_lstm")) >= 3, case


def batch_for(head: str) -> dict:
    ids = np.arange(2, 14, dtype=np.int64).reshape(2, 6)
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if head == "multiple_choice":
        batch = {name: np.stack([value, value], 1) for name, value in batch.items()}
        batch["labels"] = np.array([0, 1], np.int64)
    elif head == "question_answering":
        batch.update(start_positions=np.array([1, 2], np.int64), end_positions=np.array([2, 3], np.int64))
    elif head == "token_classification":
        batch["labels"] = np.zeros((2, 6), np.int64)
    else:
        batch["labels"] = np.array([0, 3], np.int64)
    return batch
