"""Encoder shapes, trainable-parameter counts against the reference formulas, and config validation."""

import numpy as np
import pytest
import transformers
from transformers import ElectraConfig

from ms_ptuning.arguments import ModelArguments
from ms_ptuning.backbones import BackboneLoadError, build_backbone, check_model_type, load_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.execution import choose_backend
from ms_ptuning.encoders import PrefixEncoder, PromptEncoder, compile_encoders
from ms_ptuning.models import HEADS
from ms_ptuning.weights import count_parameters, named_weights, trainable_weights
from tiny_backbones import tiny_config
import mindspore
from mindspore import ops

L, H, HEADS_, P, C = 2, 64, 4, 5, 3  # tiny_config sizes; prefix length; classes


def test_prefix_encoder_gives_per_layer_keys_and_values():
    encoder = PrefixEncoder(P, L, HEADS_, H)
    assert encoder(7).shape == (2 * L, 7, HEADS_, P, H // HEADS_)
    projected = PrefixEncoder(P, L, HEADS_, H, projection=True, projection_hidden_size=32)
    assert projected(2).shape == (2 * L, 2, HEADS_, P, H // HEADS_)


@pytest.mark.parametrize("kind", ["lstm", "mlp", "embedding"])
def test_prompt_encoder_returns_one_row_per_virtual_token(kind):
    assert PromptEncoder(P, H, kind)().shape == (P, H)


@pytest.mark.parametrize("build", [lambda: PromptEncoder(P, H, "lstm"), lambda: PromptEncoder(P, H, "mlp"),
                                   lambda: PrefixEncoder(P, L, HEADS_, H, projection=True, projection_hidden_size=32)],
                         ids=["lstm", "mlp", "prefix-projection"])
def test_compiled_encoder_matches_op_by_op(build):
    """encode() as one MindSpore graph (MLPs) or one graph per LSTM step gives the PyNative output and
    gradients."""
    encoder = build()
    params = list(encoder.get_parameters())
    weights = mindspore.Tensor(np.random.default_rng(0).standard_normal(tuple(encoder.encode().shape)), mindspore.float32)
    results = []
    for compiled in (False, True):
        compile_encoders(encoder, compiled)
        loss, grads = mindspore.value_and_grad(lambda: ops.sum(ops.mul(encoder.output(), weights)), None, params)()
        results.append((loss.asnumpy(), [g.asnumpy() for g in grads]))
    lstm = getattr(encoder, "lstm", None)
    assert lstm.compiled_steps if lstm is not None else encoder.compiled_encode is not None  # compiled ran
    (loss, grads), (compiled_loss, compiled_grads) = results
    np.testing.assert_allclose(compiled_loss, loss, rtol=1e-6)
    for grad, compiled_grad in zip(grads, compiled_grads):
        np.testing.assert_allclose(compiled_grad, grad, rtol=1e-5, atol=1e-7)
    assert not PromptEncoder(P, H, "embedding").compiles and not PrefixEncoder(P, L, HEADS_, H).compiles


def trainable_count(**config) -> int:
    model = HEADS["sequence_classification"](build_backbone(tiny_config("bert")),
                                             PTuningConfig(pre_seq_len=P, num_labels=C, **config))
    return count_parameters(trainable_weights(model))


def test_trainable_parameters_follow_the_reference_formulas():
    head = H * C + C
    assert trainable_count(mode="prefix") == P * 2 * L * H + head
    hidden = 32
    assert trainable_count(mode="prefix", prefix_projection=True, prefix_hidden_size=hidden) == (
        P * H + (H * hidden + hidden) + (hidden * 2 * L * H + 2 * L * H) + head)
    lstm_layer = lambda inputs: 2 * (4 * (H // 2) * (inputs + H // 2) + 2 * 4 * (H // 2))  # both directions
    mlp = 2 * (H * H + H)
    assert trainable_count(mode="prompt", prompt_encoder_type="lstm") == P * H + lstm_layer(H) + lstm_layer(H) + mlp + head
    assert trainable_count(mode="prompt", prompt_encoder_type="mlp") == P * H + mlp + head
    model = HEADS["sequence_classification"](build_backbone(tiny_config("bert")), PTuningConfig(mode="finetune"))
    assert count_parameters(trainable_weights(model)) == count_parameters(named_weights(model))


@pytest.mark.parametrize("bad, message", [
    (dict(mode="adapter"), "mode must be one of"),
    (dict(pre_seq_len=0), "pre_seq_len must be a positive integer"),
    (dict(pre_seq_len=-3), "pre_seq_len must be a positive integer"),
    (dict(problem_type="ranking"), "problem_type must be one of"),
    (dict(prompt_encoder_type="gru"), "prompt_encoder_type must be one of"),
    (dict(problem_type="regression", num_labels=2), "regression needs num_labels=1"),
    (dict(prefix_dropout=1.0), "prefix_dropout must be in"),
])
def test_bad_configs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        PTuningConfig(**bad)


def test_unknown_model_type_is_refused():
    with pytest.raises(ValueError, match="unknown model type 't5'"):
        check_model_type("t5")
    electra = ElectraConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=8)
    with pytest.raises(ValueError, match="unknown model type 'electra'"):
        build_backbone(electra)


def test_hub_name_offline_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackboneLoadError, match="not a local directory.*pass its local directory"):
        load_backbone("bert-base-uncased")


def test_directory_without_safetensors_is_refused(tmp_path):
    tiny_config("bert").save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(BackboneLoadError, match="no \\*.safetensors weights"):
        load_backbone(str(tmp_path))



TINY_DECODERS = {
    "gpt2": transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32),
    "llama": transformers.LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=32),
}


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_dropout_flags_set_each_model_types_own_fields(tmp_path, model_type):
    """run.py's --hidden_dropout_prob / --attention_probs_dropout_prob reach the loaded backbone under its
    config's names, in the config and in the dropout layers of both backends' backbones."""
    config = tiny_config("bert") if model_type == "bert" else TINY_DECODERS[model_type]
    build_backbone(config).save_pretrained(str(tmp_path), safe_serialization=True)
    flags = ModelArguments(model_name_or_path=str(tmp_path), hidden_dropout_prob=0.3,
                           attention_probs_dropout_prob=0.2).dropout_flags()
    backbone = load_backbone(str(tmp_path), dropout=flags)
    native = choose_backend("graph", model_type).backbone(backbone)
    layers = {"eager": list(backbone.modules()), "graph": [cell for _, cell in native.cells_and_names()]}
    rates = {backend: {layer.p for layer in found if type(layer).__name__ == "Dropout"}
             for backend, found in layers.items()}
    if model_type == "bert":
        assert (backbone.config.hidden_dropout_prob, backbone.config.attention_probs_dropout_prob) == (0.3, 0.2)
        assert rates == {"eager": {0.3, 0.2}, "graph": {0.3, 0.2}}
    elif model_type == "gpt2":
        assert (backbone.config.resid_pdrop, backbone.config.embd_pdrop, backbone.config.attn_pdrop) == (0.3, 0.3, 0.2)
        assert rates == {"eager": {0.3, 0.2}, "graph": {0.3, 0.2}}
    else:  # Llama has attention dropout only (eager: a functional dropout reading the config)
        assert backbone.config.attention_dropout == 0.2 and not hasattr(backbone.config, "hidden_dropout_prob")
        assert rates == {"eager": set(), "graph": {0.2}}
