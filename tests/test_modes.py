"""The head contract and the mode strategies.

Every registered head holds its prompted backbone under `encoder` and reads its PTuningConfig there, so
the resume fingerprint and the adapter config record it for every head. Each mode prepares the backbone
call through the Backbone interface alone: a stand-in backbone implementing that interface (as the native
GRAPH_MODE Cells do) sees exactly the tensors a mode promises.
"""

import json
import os

import mindspore
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning import run as run_module
from ms_ptuning.adapters import adapter_config
from ms_ptuning.backend import torch
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import MODES, PTuningConfig
from ms_ptuning.hf_backbone import HFBackbone, as_backbone
from ms_ptuning.models import HEADS, PTuningHead
from ms_ptuning.modes import MODE_CLASSES, PrefixTuning, PromptTuning, prompted_backbone
from ms_ptuning.safe_loading import load_safetensors
from ms_ptuning.training import Trainer
from tiny_backbones import tiny_config
from tiny_runs import same_process_runs, save_tiny_bert, tiny_arguments  # noqa: F401  (a fixture)
import transformers

B, T, P, H, LAYERS, HEADS_ = 2, 5, 3, 8, 2, 2


def tiny_backbone_for(head: str):
    if head == "causal_lm":
        return build_backbone(transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32))
    return build_backbone(tiny_config("bert"))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_registered_head_follows_the_contract(head, tmp_path):
    config = PTuningConfig(mode="prompt" if head == "lama" else "prefix", pre_seq_len=2)
    model = HEADS[head](tiny_backbone_for(head), config)
    assert isinstance(model, PTuningHead) and model.head_name == head
    assert model.config is config and isinstance(model.encoder, MODE_CLASSES[config.mode])
    assert isinstance(model.backbone, HFBackbone) and model.backbone is model.encoder.backbone
    trainer = Trainer(model, tiny_arguments(tmp_path))
    assert trainer.run_config["ptuning_config"] == config.to_dict()  # was None for three heads
    assert adapter_config(model)["head"] == head


def test_modes_cover_every_config_mode_and_only_the_finetune_backbone_trains():
    assert set(MODE_CLASSES) == set(MODES)
    for mode in MODES:
        wrapper = prompted_backbone(build_backbone(tiny_config("bert")), PTuningConfig(mode=mode, pre_seq_len=P))
        backbone_trains = {p.requires_grad for p in wrapper.backbone.model.parameters()}
        assert backbone_trains == {mode == "finetune"}
        own = {name.split(".")[0] for name, _ in wrapper.parameters_and_names()}  # the mode's own Cells
        assert own == {"prefix": {"prefix_encoder"}, "prompt": {"prompt_encoder"}, "finetune": set()}[mode]


class InterfaceBackbone(nn.Cell):
    """A stand-in with the Backbone interface: word embeddings are the ids broadcast over H, the sequence
    output is its input embeddings (or ids), the pooled output the first position. It records what it got."""

    def __init__(self):
        super().__init__()
        self.config = transformers.BertConfig(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS_)
        self.compute_dtype = None
        self.weight = mindspore.Parameter(Tensor(np.ones((4, H), np.float32)), name="weight")
        self.calls = []

    def embed_words(self, input_ids):
        return ops.broadcast_to(ops.expand_dims(ops.cast(input_ids, mindspore.float32), -1), input_ids.shape + (H,))

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        self.calls.append(dict(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, position_ids=position_ids,
                               prefix_key_values=prefix_key_values))
        sequence = inputs_embeds if inputs_embeds is not None else self.embed_words(input_ids)
        return sequence, self.pool(sequence)

    def pool(self, sequence_output):
        return ops.gather(sequence_output, Tensor(0, mindspore.int32), 1)


def inputs():
    ids = Tensor(np.arange(1, B * T + 1, dtype=np.int64).reshape(B, T))
    mask = Tensor(np.array([[1] * T, [1] * (T - 2) + [0, 0]], np.int64))
    types = Tensor(np.array([[0, 0, 1, 1, 1]] * B, np.int64))
    positions = Tensor(np.array([[0, 1, 2, 3, 4], [0, 0, 1, 2, 3]], np.int64))  # the second row left-padded
    return ids, mask, types, positions


def test_prefix_mode_passes_per_layer_keys_values_a_longer_mask_and_shifted_positions():
    backbone = InterfaceBackbone()
    wrapper = PrefixTuning(backbone, PTuningConfig(mode="prefix", pre_seq_len=P, prefix_dropout=0.0))
    ids, mask, types, positions = inputs()
    sequence, pooled = wrapper(ids, mask, types, positions)
    call = backbone.calls[-1]
    assert call["inputs_embeds"] is None and np.array_equal(call["input_ids"].asnumpy(), ids.asnumpy())
    pairs = call["prefix_key_values"]
    assert len(pairs) == LAYERS and all(k.shape == v.shape == (B, HEADS_, P, H // HEADS_) for k, v in pairs)
    table = wrapper.prefix_encoder.embedding.weight.asnumpy().reshape(P, 2 * LAYERS, HEADS_, H // HEADS_)
    np.testing.assert_array_equal(pairs[1][1].asnumpy()[0], table[:, 3].transpose(1, 0, 2))  # layer 1's values
    np.testing.assert_array_equal(call["attention_mask"].asnumpy(), np.concatenate([np.ones((B, P)), mask.asnumpy()], 1))
    np.testing.assert_array_equal(call["position_ids"].asnumpy(), positions.asnumpy() + P)
    np.testing.assert_array_equal(call["token_type_ids"].asnumpy(), types.asnumpy())
    assert sequence.shape == (B, T, H) and pooled.shape == (B, H)  # nothing to trim


def test_prompt_mode_prepends_prompts_then_trims_them_and_pools_the_first_real_token():
    backbone = InterfaceBackbone()
    wrapper = PromptTuning(backbone, PTuningConfig(mode="prompt", pre_seq_len=P, prompt_encoder_type="embedding"))
    ids, mask, types, positions = inputs()
    sequence, pooled = wrapper(ids, mask, types, positions)
    call = backbone.calls[-1]
    prompts = wrapper.prompt_encoder.embedding.weight.asnumpy()
    assert call["input_ids"] is None and call["prefix_key_values"] is None
    embeds = call["inputs_embeds"].asnumpy()
    np.testing.assert_array_equal(embeds[:, :P], np.broadcast_to(prompts, (B, P, H)))
    np.testing.assert_array_equal(embeds[:, P:, 0], ids.asnumpy())
    np.testing.assert_array_equal(call["token_type_ids"].asnumpy()[:, :P], 0)
    np.testing.assert_array_equal(call["position_ids"].asnumpy(),
                                  np.concatenate([np.tile(np.arange(P), (B, 1)), positions.asnumpy() + P], 1))
    np.testing.assert_array_equal(sequence.asnumpy()[..., 0], ids.asnumpy())  # real tokens only
    np.testing.assert_array_equal(pooled.asnumpy()[:, 0], ids.asnumpy()[:, 0])  # re-pooled on the first real one


def test_template_prompts_replace_the_pseudo_positions_only():
    backbone = InterfaceBackbone()
    wrapper = PromptTuning(backbone, PTuningConfig(mode="prompt", pre_seq_len=2, prompt_encoder_type="embedding"))
    ids, mask, _, _ = inputs()
    index = Tensor(np.array([[-1, 0, -1, 1, -1], [1, -1, -1, -1, 0]], np.int64))
    hidden = wrapper.forward_with_template_prompts(ids, mask, index).asnumpy()
    prompts = wrapper.prompt_encoder.embedding.weight.asnumpy()
    for row, column in zip(*np.nonzero(index.asnumpy() >= 0)):
        np.testing.assert_array_equal(hidden[row, column], prompts[index.asnumpy()[row, column]])
    real = index.asnumpy() < 0
    np.testing.assert_array_equal(hidden[..., 0][real], ids.asnumpy()[real])


class GraphBackbone(nn.Cell):
    """The Backbone interface in plain `mindspore.ops` (what the native Cells are): GRAPH_MODE compiles it."""

    def __init__(self):
        super().__init__()
        self.config = transformers.BertConfig(hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS_)
        self.compute_dtype = None
        table = np.random.default_rng(0).standard_normal((B * T + 1, H)).astype(np.float32)
        self.table = mindspore.Parameter(Tensor(table), name="table")

    def embed_words(self, input_ids):
        return ops.gather(self.table, input_ids, 0)

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_words(input_ids)
        weight = ops.cast(ops.add(ops.add(token_type_ids, position_ids), 1), mindspore.float32)  # (B, T_in)
        hidden = ops.mul(inputs_embeds, ops.expand_dims(weight, -1))
        hidden = ops.add(hidden, ops.cast(ops.reduce_sum(attention_mask), mindspore.float32))
        if prefix_key_values is not None:
            for key, value in prefix_key_values:
                hidden = ops.add(hidden, ops.reduce_sum(ops.mul(key, value)))
        return hidden, self.pool(hidden)

    def pool(self, sequence_output):
        return ops.gather(sequence_output, Tensor(0, mindspore.int32), 1)


class SquaredOutputs(nn.Cell):
    def __init__(self, wrapper):
        super().__init__()
        self.wrapper = wrapper

    def construct(self, input_ids, attention_mask, token_type_ids, position_ids):
        sequence, pooled = self.wrapper(input_ids, attention_mask, token_type_ids, position_ids)
        return ops.add(ops.reduce_sum(ops.square(sequence)), ops.reduce_sum(pooled))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_compiles_in_graph_mode_with_the_same_numbers(mode):
    """The modes' own tensor code is static-shape `mindspore.ops`: over a backbone that compiles, the whole
    forward and backward runs as one GRAPH_MODE graph with PyNative's loss and gradients."""
    results = []
    for graph_mode in (False, True):
        mindspore.set_context(mode=mindspore.GRAPH_MODE if graph_mode else mindspore.PYNATIVE_MODE,
                              jit_config={"jit_level": "O0"})
        try:
            np.random.seed(0)
            config = PTuningConfig(mode=mode, pre_seq_len=P, prefix_dropout=0.0)
            loss = SquaredOutputs(prompted_backbone(GraphBackbone(), config))
            params = mindspore.ParameterTuple(loss.trainable_params())
            gradients = ops.GradOperation(get_by_list=True)(loss, params)(*inputs())
            results.append((loss(*inputs()).asnumpy(), [g.asnumpy() for g in gradients]))
        finally:
            mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    (loss, grads), (graph_loss, graph_grads) = results
    np.testing.assert_allclose(graph_loss, loss, rtol=1e-5)
    assert len(grads) == len(graph_grads) == 1  # the encoder's table, or in finetune mode the backbone's
    for grad, graph_grad in zip(grads, graph_grads):
        np.testing.assert_allclose(graph_grad, grad, rtol=1e-5, atol=1e-6)


def test_a_backbone_cell_is_used_as_it_is_frozen_when_asked_and_its_precision_is_set_once():
    backbone = InterfaceBackbone()
    assert as_backbone(backbone, trainable=False) is backbone and not backbone.weight.requires_grad
    already = InterfaceBackbone()
    already.compute_dtype = mindspore.bfloat16
    with pytest.raises(ValueError, match=r"InterfaceBackbone computes in mindspore.bfloat16 already, the model asks "
                                         r"for mindspore.float16: a backbone's precision is set once"):
        as_backbone(already, compute_dtype=mindspore.float16)


def test_precision_is_a_constructor_option_of_the_head():
    model = HEADS["sequence_classification"](build_backbone(tiny_config("bert")), PTuningConfig(),
                                             compute_dtype=mindspore.float16)
    assert model.backbone.compute_dtype == mindspore.float16
    frozen = {p.dtype for n, p in model.backbone.model.named_parameters() if "word_embeddings" not in n}
    assert frozen == {mindspore.float16}
    _, logits = model(torch.tensor(np.ones((1, 4), np.int64)), torch.tensor(np.ones((1, 4), np.int64)))
    assert logits.dtype == mindspore.float32


RTE_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tasks", "rte")


def test_freeze_backbone_flag_trains_the_head_only(tmp_path, same_process_runs):  # noqa: F811
    """`--mode finetune --freeze_backbone`: THUDM's head-only fine-tuning; the default trains everything."""
    model_dir = save_tiny_bert(str(tmp_path / "model"))
    argv = ["--task", "rte", "--model_name_or_path", model_dir, "--data_dir", RTE_FIXTURE, "--max_steps", "2",
            "--per_device_train_batch_size", "2", "--max_seq_length", "48", "--mode", "finetune"]
    model_args = run_module.parse(argv + ["--output_dir", str(tmp_path / "full")])[0]
    assert model_args.ptuning_config(0.1).trains_backbone  # the default: full fine-tuning
    results = run_module.run(*run_module.parse(argv + ["--output_dir", str(tmp_path / "head"), "--freeze_backbone"]))
    hidden = 32  # tiny_runs' BERT
    assert results["trainable_parameters"] == hidden * 2 + 2 and np.isfinite(results["train_loss"])
    adapter = tmp_path / "head" / "adapter"
    assert set(load_safetensors(str(adapter / "adapter.safetensors"))) == {"classifier.weight", "classifier.bias"}
    with open(adapter / "adapter_config.json") as handle:
        assert json.load(handle)["ptuning_config"]["freeze_backbone"] is True
