"""Key/value prefixes inside DeBERTa / DeBERTa-v2 attention (ms_ptuning/deberta_prefix.py), on mindnlp,
and a prefix-tuned DeBERTa-v2 token classifier trained by the Trainer."""

import numpy as np
import pytest

from ms_ptuning.backend import torch
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.dataset import ArrayDataset
from ms_ptuning.deberta_prefix import attention_prefixes, forward_with_prefix
from ms_ptuning.models import HEADS
from ms_ptuning.training import Trainer, TrainingArguments
from ms_ptuning.weights import named_weights, to_numpy, trainable_weights
from tiny_backbones import tiny_config

BATCH, LENGTH, PREFIX, NUM_HEADS, HEAD_DIM = 2, 7, 3, 4, 16
FAMILIES = ("deberta", "deberta-v2")


@pytest.fixture(scope="module", params=FAMILIES)
def backbone(request):
    torch.manual_seed(0)
    model = build_backbone(tiny_config(request.param))
    model.eval()
    return model


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    mask = np.ones((BATCH, LENGTH), np.int64)
    mask[1, 5:] = 0
    return torch.tensor(rng.integers(2, 100, (BATCH, LENGTH))), torch.tensor(mask)


def prefixes(length: int, seed: int = 1, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    shape = (BATCH, NUM_HEADS, length, HEAD_DIM)
    return tuple((torch.tensor((rng.standard_normal(shape) * scale).astype(np.float32)),
                  torch.tensor((rng.standard_normal(shape) * scale).astype(np.float32))) for _ in range(2))


def test_empty_prefix_reproduces_the_model_exactly(backbone, inputs):
    input_ids, mask = inputs
    plain = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state.asnumpy()
    empty = forward_with_prefix(backbone, prefixes(0), input_ids, mask).last_hidden_state.asnumpy()
    np.testing.assert_array_equal(empty, plain)


def test_prefix_changes_every_real_token_and_adds_no_positions(backbone, inputs):
    input_ids, mask = inputs
    plain = backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state.asnumpy()
    prefixed = forward_with_prefix(backbone, prefixes(PREFIX), input_ids, mask).last_hidden_state.asnumpy()
    assert prefixed.shape == plain.shape == (BATCH, LENGTH, 64)
    real = mask.asnumpy() == 1
    assert np.abs(prefixed - plain).max(-1)[real].min() > 1e-3


def test_attention_forward_is_restored_after_the_call(backbone, inputs):
    forward_with_prefix(backbone, prefixes(PREFIX), *inputs)
    assert all("forward" not in vars(layer.attention.self) for layer in backbone.encoder.layer)


def attention_probabilities(backbone, input_ids, mask, layer_prefixes=None):
    """Layer 0's attention probabilities (B, heads, T, P+T): its input does not depend on the prefix once
    positions are shifted by P the way `forward_with_prefix` shifts them."""
    positions = torch.tensor(np.arange(PREFIX, PREFIX + LENGTH)[None])
    if layer_prefixes is None:
        outputs = backbone(input_ids=input_ids, attention_mask=mask, position_ids=positions, output_attentions=True)
    else:
        with attention_prefixes(backbone, layer_prefixes):
            outputs = backbone(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                               output_attentions=True)
    return outputs.attentions[0].asnumpy()


def test_relative_position_bias_and_mask_cover_the_real_keys_only(backbone, inputs):
    input_ids, mask = inputs
    plain = attention_probabilities(backbone, input_ids, mask)  # (B, heads, T, T)
    zero_keys = tuple((torch.zeros(BATCH, NUM_HEADS, PREFIX, HEAD_DIM), value) for _, value in prefixes(PREFIX))
    prefixed = attention_probabilities(backbone, input_ids, mask, zero_keys)  # (B, heads, T, P+T)
    real_queries = mask.asnumpy() == 1  # (B, T)
    to_prefix, to_real = prefixed[..., :PREFIX], prefixed[..., PREFIX:]
    # zero keys score exactly 0 at every prefix position: no relative-position bias reaches them
    rows = to_prefix.transpose(0, 2, 1, 3)[real_queries]  # (real queries, heads, P)
    np.testing.assert_allclose(rows, np.broadcast_to(rows[..., :1], rows.shape), rtol=1e-6)
    assert rows.min() > 0
    # over the real keys the prefixed attention is the plain one, rescaled: same bias, same mask
    renormalised = to_real / to_real.sum(-1, keepdims=True)
    np.testing.assert_allclose(renormalised.transpose(0, 2, 1, 3)[real_queries],
                               plain.transpose(0, 2, 1, 3)[real_queries], atol=1e-6)
    # padding queries stay fully masked, prefix included, as in the reference's (P+T)² mask
    padding_rows = prefixed.transpose(0, 2, 1, 3)[~real_queries]
    np.testing.assert_allclose(padding_rows, 1.0 / (PREFIX + LENGTH), rtol=1e-6)


def test_padding_tokens_stay_invisible_with_a_prefix(backbone, inputs):
    input_ids, mask = inputs
    other_padding = input_ids.asnumpy().copy()
    other_padding[1, 5:] = [3, 4]
    first = forward_with_prefix(backbone, prefixes(PREFIX), input_ids, mask).last_hidden_state.asnumpy()
    second = forward_with_prefix(backbone, prefixes(PREFIX), torch.tensor(other_padding), mask)
    np.testing.assert_allclose(second.last_hidden_state.asnumpy()[1, :5], first[1, :5], atol=1e-6)


def test_wrong_number_of_layer_prefixes_is_rejected(backbone, inputs):
    with pytest.raises(ValueError, match="1 layer prefixes for a 2-layer"):
        forward_with_prefix(backbone, prefixes(PREFIX)[:1], *inputs)


def test_absolute_positions_continue_after_the_prefix(inputs):
    torch.manual_seed(0)
    backbone = build_backbone(tiny_config("deberta", position_biased_input=True))
    backbone.eval()
    input_ids, mask = inputs
    layer_prefixes = prefixes(PREFIX)
    with attention_prefixes(backbone, layer_prefixes):
        shifted = backbone(input_ids=input_ids, attention_mask=mask,
                           position_ids=torch.tensor(np.arange(PREFIX, PREFIX + LENGTH)[None]))
    np.testing.assert_array_equal(forward_with_prefix(backbone, layer_prefixes, input_ids, mask)
                                  .last_hidden_state.asnumpy(), shifted.last_hidden_state.asnumpy())


def test_prefix_token_classifier_trains_with_the_trainer_and_keeps_the_backbone_frozen(tmp_path):
    rng = np.random.default_rng(0)
    input_ids = rng.integers(2, 100, (16, 6)).astype(np.int64)
    dataset = ArrayDataset({"input_ids": input_ids, "attention_mask": np.ones_like(input_ids),
                            "labels": (input_ids >= 50).astype(np.int64)})  # tag: word id ≥ 50
    torch.manual_seed(0)
    np.random.seed(0)
    model = HEADS["token_classification"](build_backbone(tiny_config("deberta-v2")),
                                          PTuningConfig(mode="prefix", pre_seq_len=4, num_labels=2))
    backbone_before = {name: value for name, value in to_numpy(named_weights(model)).items()
                       if ".backbone." in name}
    assert not set(backbone_before) & set(trainable_weights(model))
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=5e-2, per_device_train_batch_size=8,
                             num_train_epochs=5, lr_scheduler_type="constant", eval_strategy="no",
                             save_strategy="no", report_to=[], logging_steps=1, disable_tqdm=True)
    trainer = Trainer(model, args, train_dataset=dataset)
    before = trainer.evaluate(dataset)["eval_loss"]
    trainer.train()
    assert trainer.evaluate(dataset)["eval_loss"] < 0.5 * before  # 0.84 → 0.22 when written
    assert trainer.predict(dataset).predictions.shape == (16, 6, 2)
    after = to_numpy(named_weights(model))
    assert all(np.array_equal(value, after[name]) for name, value in backbone_before.items())
