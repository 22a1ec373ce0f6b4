"""`gradient_checkpointing` on the graph backend: every native layer is marked for MindSpore's recomputation
and a tiny grouped-query Llama trains to the same numbers with and without it, attention dropout on (its
masks are a pure function of the step key, so the recomputed forward draws the same ones). The eager engine
refuses the flag."""

import numpy as np
import pytest
import transformers

from ms_ptuning.backend import seed_everything
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.distributed import DataParallel
from ms_ptuning.models import HEADS
from ms_ptuning.native import recompute_layers, to_native
from ms_ptuning.training import TrainingArguments
from ms_ptuning.training.eager_steps import EagerSteps
from ms_ptuning.training.graph_steps import GraphSteps
from ms_ptuning.training.precision import LossScaler
from ms_ptuning.weights import trainable_weights
from tiny_backbones import tiny_config

LLAMA = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                 initializer_range=0.02, attention_dropout=0.2, tie_word_embeddings=False)
STEPS = 3


def arguments(checkpointing: bool) -> TrainingArguments:
    return TrainingArguments(output_dir="unused", learning_rate=1e-2, per_device_train_batch_size=4,
                             gradient_checkpointing=checkpointing, report_to=[])


def token_batch(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, 97, (4, 12))
    return {"input_ids": input_ids, "attention_mask": np.ones((4, 12), np.int64), "labels": input_ids.copy()}


def prefix_run(checkpointing: bool):
    """(losses, gradient norms, final prefix) of STEPS prefix-tuning steps on GraphSteps, dropout on."""
    seed_everything(0)
    model = HEADS["causal_lm"](to_native(build_backbone(LLAMA)), PTuningConfig(mode="prefix", pre_seq_len=4))
    steps = GraphSteps(model, trainable_weights(model), arguments(checkpointing), LossScaler("none"), DataParallel())
    results = [steps.train_step([token_batch(step)], [step], 1e-2) for step in range(STEPS)]
    prefix = trainable_weights(model)["encoder.prefix_encoder.embedding.weight"].asnumpy()
    return model, np.array([r.loss for r in results]), np.array([r.grad_norm for r in results]), prefix


def test_recomputed_llama_trains_to_the_same_numbers():
    """Losses, gradient norms and the final prefix within 1e-6 relative (the same ops recomputed in the same
    order: measured equal); the layers really carry MindSpore's recompute mark."""
    plain, losses, norms, prefix = prefix_run(False)
    marked, losses_rc, norms_rc, prefix_rc = prefix_run(True)
    assert all(layer._has_config_recompute for layer in marked.backbone.transformer_layers)
    assert not any(layer._has_config_recompute for layer in plain.backbone.transformer_layers)
    assert len(set(losses.tolist())) == STEPS and np.all(norms > 0)  # real, distinct steps
    np.testing.assert_allclose(losses_rc, losses, rtol=1e-6)
    np.testing.assert_allclose(norms_rc, norms, rtol=1e-6)
    np.testing.assert_allclose(prefix_rc, prefix, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_every_native_layer_is_marked(model_type):
    config = tiny_config("bert") if model_type == "bert" else transformers.GPT2Config(
        vocab_size=100, n_embd=32, n_layer=3, n_head=2, n_positions=64)
    backbone = to_native(build_backbone(config))
    recompute_layers(backbone)
    assert len(backbone.transformer_layers) == config.num_hidden_layers
    assert all(layer._has_config_recompute for layer in backbone.transformer_layers)


def test_eager_engine_and_mindnlp_backbones_refuse_it():
    model = HEADS["causal_lm"](build_backbone(LLAMA), PTuningConfig(mode="prefix", pre_seq_len=4))
    with pytest.raises(ValueError, match="gradient_checkpointing=True: .*use the graph backend"):
        EagerSteps(model, trainable_weights(model), arguments(True), LossScaler("none"), DataParallel())
    with pytest.raises(ValueError, match="HFBackbone is not a native backbone"):
        recompute_layers(model.backbone)
