"""Tiny training setups shared by the reliability tests: a local model directory as users pass it to
`ms_ptuning.run` (config.json, model.safetensors or pytorch_model.bin, tokenizer files), an in-process
prefix-tuned classifier with its data and TrainingArguments, and a fixture to call run.run in-process."""

import os

import numpy as np
import pytest

from ms_ptuning import run as run_module
from ms_ptuning.backend import seed_everything
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.dataset import ArrayDataset
from ms_ptuning.models import HEADS
from ms_ptuning.training import TrainingArguments
from tiny_backbones import tiny_config
from tiny_tokenizer import build_tokenizer
import transformers


def save_tiny_bert(directory: str, max_position_embeddings: int = 64, safe_serialization: bool = True) -> str:
    """A 2-layer hidden-32 random BERT (seed 0) with the tiny WordPiece tokenizer."""
    seed_everything(0)
    os.makedirs(directory, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    tokenizer.save_pretrained(directory)
    build_backbone(tiny_bert_config(len(tokenizer), max_position_embeddings)).save_pretrained(
        directory, safe_serialization=safe_serialization)
    return directory


def tiny_bert_config(vocab_size: int, max_position_embeddings: int = 64) -> "transformers.BertConfig":
    return transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=37, max_position_embeddings=max_position_embeddings)


def tiny_classifier(pre_seq_len: int = 4, compute_dtype=None):
    """Prefix-tuned sequence classifier over tiny_backbones' BERT (hidden 64, 2 layers), seed 0."""
    seed_everything(0)
    return HEADS["sequence_classification"](build_backbone(tiny_config("bert")),
                                            PTuningConfig(mode="prefix", pre_seq_len=pre_seq_len), compute_dtype)


def tiny_dataset(seed: int = 0, size: int = 12) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    return ArrayDataset({"input_ids": rng.integers(5, 100, (size, 8)), "attention_mask": np.ones((size, 8), np.int64),
                         "labels": rng.integers(0, 2, size)})


def tiny_arguments(output_dir, **overrides) -> TrainingArguments:
    """Batches of 4 (3 steps an epoch of tiny_dataset), 2 steps, a checkpoint after every step."""
    values = dict(output_dir=str(output_dir), learning_rate=1e-2, per_device_train_batch_size=4, max_steps=2,
                  save_strategy="steps", save_steps=1, save_total_limit=None, eval_strategy="no", logging_steps=1,
                  report_to=[], seed=3, disable_tqdm=True)
    return TrainingArguments(**{**values, **overrides})


@pytest.fixture(scope="module")
def same_process_runs():
    """Lets tests call `ms_ptuning.run.run` in-process: run() selects the device first, which MindSpore
    refuses once kernels ran, and CPU is the default anyway."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "set_device_target", lambda target: None)
        yield
