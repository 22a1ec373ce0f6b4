"""Native GRAPH_MODE backbones (ms_ptuning.native) against the eager mindnlp model on the same weights and
against real torch transformers (tests/native_reference.py, its own process): BERT, RoBERTa and GPT-2 ×
{plain ids, per-layer prefix, prompt embeddings prepended}, fp32, eval mode. Sequence output and pooled
output within 1e-5 (max-abs), gradients w.r.t. the prefix, the prompt embeddings and (plain: finetune) every
weight within 1e-4 (the project's relative metric). Batches carry padding, BERT token types, RoBERTa pad
tokens, GPT-2 left padding with explicit positions. Also: Hugging Face parameter names, the weight move,
refused configs, GPT-2 incremental decoding and where dropout applies."""

import os
import subprocess
import sys

import mindspore
import numpy as np
import pytest
from mindspore import ParameterTuple, Tensor, nn, ops
from safetensors.numpy import load_file, save_file

from ms_ptuning.backend import graph_mode, torch
from ms_ptuning.backbones import build_backbone
from ms_ptuning.layers import Dropout
from ms_ptuning.native import functional as F
from ms_ptuning.device import kernels
from ms_ptuning.native.cells import LayerNorm
from ms_ptuning.native import (NATIVE_MODEL_TYPES, GPT2Prefill, GPT2StaticStep, build_native, fixed_size_cache,
                               to_native)
import transformers

import native_reference
from tiny_backbones import tiny_config

BATCH, STEPS, VIRTUAL = 3, 7, 4
MODEL_TYPES = ("bert", "roberta", "gpt2")
VARIANTS = ("plain", "prefix", "embeds")
# the devices' kernels (device.kernels) compiled here on CPU: every model's prefix (the input gradient through
# every layer) and BERT's and GPT-2's plain ids (every weight's gradient through the fused q/k/v product)
DEVICE_KERNEL_CASES = (("bert", "prefix"), ("roberta", "prefix"), ("gpt2", "prefix"), ("bert", "plain"),
                       ("gpt2", "plain"))


def config_for(model_type: str, **overrides):
    if model_type == "gpt2":
        return transformers.GPT2Config(**{"vocab_size": 100, "n_positions": 64, "n_embd": 64, "n_layer": 2,
                                          "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                                          **overrides})
    return tiny_config(model_type, **overrides)


def make_batch(config, variant: str, seed: int) -> dict:
    """Padding in row 1 (right; GPT-2: left, with positions counted from its first real token), token types
    (BERT; GPT-2 except with prompts), RoBERTa pad tokens at padded positions; a prefix (2L, B, heads, P, d)
    or prompts (B, P, H)."""
    rng = np.random.default_rng(seed)
    heads, hidden, layers = config.num_attention_heads, config.hidden_size, config.num_hidden_layers
    ids = rng.integers(3, config.vocab_size, (BATCH, STEPS)).astype(np.int64)
    mask = np.ones((BATCH, STEPS), np.int64)
    batch = {}
    if config.model_type == "gpt2":  # token types are looked up in wte and added, as Hugging Face does
        mask[1, :2] = 0
        batch["position_ids"] = np.maximum(np.cumsum(mask, 1) - 1, 0)
        batch["token_type_ids"] = rng.integers(0, config.vocab_size, (BATCH, STEPS))
    else:
        mask[1, 5:] = 0
    if config.model_type == "roberta":
        ids[mask == 0] = config.pad_token_id
    virtual = VIRTUAL if variant != "plain" else 0
    if config.model_type == "bert":
        batch["token_type_ids"] = np.concatenate([np.zeros((BATCH, virtual if variant == "embeds" else 0), np.int64),
                                                  rng.integers(0, 2, (BATCH, STEPS))], axis=1)
    if variant == "prefix":
        batch["prefix"] = rng.standard_normal((2 * layers, BATCH, heads, VIRTUAL, hidden // heads)).astype(np.float32)
    if variant == "embeds":
        batch["prompts"] = rng.standard_normal((BATCH, VIRTUAL, hidden)).astype(np.float32)
        for name in ("position_ids", "token_type_ids") if config.model_type == "gpt2" else ():
            batch.pop(name)  # prompt + tokens: GPT-2's default positions, no token types
    output_steps = STEPS + (VIRTUAL if variant == "embeds" else 0)
    batch.update(input_ids=ids, attention_mask=np.concatenate([np.ones((BATCH, virtual), np.int64), mask], axis=1),
                 r_seq=rng.standard_normal((BATCH, output_steps, hidden)).astype(np.float32))
    if config.model_type != "gpt2":
        batch["r_pool"] = rng.standard_normal((BATCH, hidden)).astype(np.float32)
    return batch


def eager_results(model, batch: dict, variant: str) -> dict:
    """The mindnlp model through the reference's own forward: outputs and gradients as numpy."""
    inputs = {name: torch.tensor(array) for name, array in batch.items()}
    leaves = {name: torch.nn.Parameter(inputs.pop(name)) for name in ("prefix", "prompts") if name in inputs}
    r_seq, r_pool = inputs.pop("r_seq"), inputs.pop("r_pool", None)
    weights = dict(model.named_parameters()) if variant == "plain" else {}
    trainable = {**leaves, **weights}

    def loss_fn():
        output = native_reference.forward(model, inputs, variant, leaves)
        loss = (output.last_hidden_state * r_seq).sum()
        pooled = getattr(output, "pooler_output", None)
        if pooled is not None:
            loss = loss + (pooled * r_pool).sum()
        return loss, output.last_hidden_state, pooled

    (_, sequence, pooled), grads = mindspore.value_and_grad(loss_fn, None, list(trainable.values()),
                                                            has_aux=True)()
    result = {"sequence": sequence.asnumpy()}
    if pooled is not None:
        result["pooled"] = pooled.asnumpy()
    result.update({f"grad.{name}": grad.asnumpy() for name, grad in zip(trainable, grads)})
    return result


class NativeLoss(nn.Cell):
    """Σ sequence · r_seq (+ Σ pooled · r_pool) of a native backbone for one variant."""

    def __init__(self, backbone, variant: str):
        super().__init__()
        self.backbone = backbone
        self.variant = variant

    def construct(self, input_ids, attention_mask, token_type_ids, position_ids, extra, r_seq, r_pool):
        inputs = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
        if self.variant == "prefix":
            parts = ops.unstack(extra, 0)
            pairs = tuple((parts[2 * i], parts[2 * i + 1]) for i in range(len(parts) // 2))
            sequence, pooled = self.backbone(input_ids=input_ids, prefix_key_values=pairs, **inputs)
        elif self.variant == "embeds":
            embeds = ops.concat((extra, self.backbone.embed_words(input_ids)), 1)
            sequence, pooled = self.backbone(inputs_embeds=embeds, **inputs)
        else:
            sequence, pooled = self.backbone(input_ids=input_ids, **inputs)
        loss = ops.reduce_sum(ops.mul(sequence, r_seq))
        if pooled is None:
            return loss, sequence, sequence
        return ops.add(loss, ops.reduce_sum(ops.mul(pooled, r_pool))), sequence, pooled


class NativeGrads(nn.Cell):
    def __init__(self, backbone, variant: str):
        super().__init__()
        loss = NativeLoss(backbone, variant)
        if variant == "plain":
            self.names = [name for name, _ in backbone.parameters_and_names()]
            self.grad_fn = mindspore.value_and_grad(loss, None, ParameterTuple(backbone.get_parameters()), has_aux=True)
        else:
            self.names = ["prefix" if variant == "prefix" else "prompts"]
            self.grad_fn = mindspore.value_and_grad(loss, 4, None, has_aux=True)

    def construct(self, *inputs):
        return self.grad_fn(*inputs)


def native_results(backbone, batch: dict, variant: str) -> dict:
    """The native backbone compiled (GRAPH_MODE): outputs and gradients as numpy."""
    extra = batch.get("prefix", batch.get("prompts", np.zeros(1, np.float32)))
    arrays = [batch.get(name) for name in ("input_ids", "attention_mask", "token_type_ids", "position_ids")]
    arrays += [extra, batch["r_seq"], batch.get("r_pool", np.zeros(1, np.float32))]
    step = NativeGrads(backbone, variant)
    with graph_mode():
        (_, sequence, pooled), grads = step(*[None if a is None else Tensor(a) for a in arrays])
    grads = grads if isinstance(grads, tuple) else (grads,)
    result = {"sequence": sequence.asnumpy(), **{f"grad.{n}": g.asnumpy() for n, g in zip(step.names, grads)}}
    if backbone.pool(Tensor(np.zeros((1, 1, backbone.config.hidden_size), np.float32))) is not None:
        result["pooled"] = pooled.asnumpy()
    return result


def relative_grad_differences(grads: dict, reference: dict) -> dict:
    """parity.py's metric: max |g − g_ref| / max(max |g_ref|, 1e-3 · the largest |g_ref| of any tensor)."""
    floor = 1e-3 * max(float(np.abs(ref).max()) for ref in reference.values())
    return {name: float(np.abs(grads[name] - ref).max() / max(float(np.abs(ref).max()), floor, 1e-30))
            for name, ref in reference.items()}


@pytest.fixture(scope="module")
def parity_cases(tmp_path_factory):
    """(model_type, variant) → (eager results, native results, torch results); one torch process for all."""
    root = tmp_path_factory.mktemp("native_parity")
    cases, workdirs, device_results = {}, [], {}
    for seed, (model_type, variant) in enumerate((m, v) for m in MODEL_TYPES for v in VARIANTS):
        config = config_for(model_type)
        mindspore.set_seed(seed)
        torch.manual_seed(seed)
        model = build_backbone(config)
        model.eval()
        batch = make_batch(config, variant, seed)
        workdir = root / f"{model_type}_{variant}"
        workdir.mkdir()
        save_file({name: param.asnumpy().copy() for name, param in model.named_parameters()},
                  str(workdir / "weights.safetensors"))
        save_file(batch, str(workdir / "batch.safetensors"))
        (workdir / "spec.json").write_text(f'{{"config": {config.to_json_string()}, "variant": "{variant}"}}')
        eager = eager_results(model, batch, variant)
        native = to_native(model)
        native.set_train(False)
        cases[(model_type, variant)] = (eager, native_results(native, batch, variant))
        if (model_type, variant) in DEVICE_KERNEL_CASES:  # Ascend/GPU's choice, run on CPU
            mindspore.set_seed(seed)  # the same weights again: to_native moved the first model's away
            torch.manual_seed(seed)
            twin = build_backbone(config)
            twin.eval()
            with kernels.forced(True):
                on_device = to_native(twin)
            on_device.set_train(False)
            assert all(cell.use_kernel for _, cell in on_device.cells_and_names() if isinstance(cell, LayerNorm))
            device_results[(model_type, variant)] = native_results(on_device, batch, variant)
        workdirs.append(str(workdir))
    script = os.path.join(os.path.dirname(__file__), "native_reference.py")
    finished = subprocess.run([sys.executable, script, *workdirs], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-4000:]
    compared = {key: (*results, load_file(os.path.join(workdir, "reference.safetensors")))
                for (key, results), workdir in zip(cases.items(), workdirs)}
    for (model_type, variant), results in device_results.items():
        compared[(model_type, variant, "device kernels")] = (None, results, compared[(model_type, variant)][2])
    return compared


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_native_matches_eager_and_torch(parity_cases, model_type, variant):
    eager, native, reference = parity_cases[(model_type, variant)]
    expected_outputs = {"sequence", "pooled"} if model_type != "gpt2" else {"sequence"}
    assert {k for k in reference if not k.startswith("grad.")} == expected_outputs
    grad_names = {k for k in reference if k.startswith("grad.")}
    assert set(native) - expected_outputs == grad_names and set(eager) - expected_outputs == grad_names
    for name in expected_outputs:
        assert native[name].shape == reference[name].shape
        assert np.abs(native[name] - reference[name]).max() <= 1e-5, name
        assert np.abs(native[name] - eager[name]).max() <= 1e-5, name
    reference_grads = {name: reference[name] for name in grad_names}
    assert max(float(np.abs(g).max()) for g in reference_grads.values()) > 0
    for other in (native, eager):
        worst = relative_grad_differences(other, reference_grads)
        assert max(worst.values()) <= 1e-4, sorted(worst.items(), key=lambda item: -item[1])[:3]


@pytest.mark.parametrize("model_type, variant", DEVICE_KERNEL_CASES)
def test_device_kernels_chosen_for_ascend_and_gpu_match_torch(parity_cases, model_type, variant):
    """device.kernels composes on CPU and takes MindSpore's kernels on the devices (LayerNorm, GeLU, one q/k/v
    product, heads by reshape + transpose, softmax's own backward, broadcasting masks): the devices' graph,
    compiled and run here, holds the same bounds against torch."""
    assert kernels.device_kernels() is False and LayerNorm(4, 1e-5).use_kernel is False  # the CPU's choice
    _, native, reference = parity_cases[(model_type, variant, "device kernels")]
    for name in [k for k in reference if not k.startswith("grad.")]:
        assert np.abs(native[name] - reference[name]).max() <= 1e-5, name
    grads = {k: v for k, v in reference.items() if k.startswith("grad.")}
    assert set(native) - {"sequence", "pooled"} == set(grads)
    worst = relative_grad_differences(native, grads)
    assert max(worst.values()) <= 1e-4, sorted(worst.items(), key=lambda item: -item[1])[:3]


PADDING_ROWS = ("grad.embeddings.word_embeddings.weight", "grad.embeddings.position_embeddings.weight")


def test_embedding_padding_rows_get_no_gradient(parity_cases):
    """RoBERTa's batch holds pad tokens (word row 1) at pad positions (position row 1): torch, the native
    Cells and the eager model (backend.py's padding_idx workaround for mindtorch's embedding) give those
    rows no gradient."""
    eager, native, reference = parity_cases[("roberta", "plain")]
    pad = config_for("roberta").pad_token_id
    for name in PADDING_ROWS:
        assert not reference[name][pad].any() and not native[name][pad].any() and not eager[name][pad].any()
        assert np.abs(native[name]).max() > 0


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_parameter_names_and_layouts_are_hugging_face(model_type):
    config = config_for(model_type)
    model = build_backbone(config)
    expected = {name: tuple(param.shape) for name, param in model.named_parameters()}
    native = {name: tuple(param.shape) for name, param in build_native(config).parameters_and_names()}
    assert native == expected
    if model_type == "gpt2":  # Conv1D stores (in, out)
        assert native["h.0.attn.c_attn.weight"] == (config.hidden_size, 3 * config.hidden_size)
    else:
        assert "pooler.dense.weight" in native and "encoder.layer.0.attention.self.query.weight" in native
        without_pooler = dict(build_native(config, add_pooling_layer=False).parameters_and_names())
        assert set(without_pooler) == set(native) - {"pooler.dense.weight", "pooler.dense.bias"}


def test_to_native_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="native backbones exist for bert, roberta, gpt2"):
        to_native(build_backbone(tiny_config("deberta")))
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key'"):
        build_native(tiny_config("bert", position_embedding_type="relative_key"))
    with pytest.raises(ValueError, match="activation 'silu'"):
        build_native(tiny_config("roberta", hidden_act="silu"))
    with pytest.raises(ValueError, match="is_decoder=True"):
        build_native(tiny_config("bert", is_decoder=True))
    model = build_backbone(tiny_config("bert"))
    model.pooler.dense.bias = None  # a module that is not the stock BertModel
    with pytest.raises(ValueError, match=r"only in the native bert: \['pooler.dense.bias'\]"):
        to_native(model)
    assert sorted(NATIVE_MODEL_TYPES) == ["bert", "gpt2", "llama", "qwen2", "roberta"]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_conversion_moves_the_weights_without_a_second_copy():
    """to_native takes over each tensor's storage: the mindnlp model is left without parameters, the native
    Cell holds the very values, and resident memory does not grow by the size of the backbone (~100 MB)."""
    config = tiny_config("bert", vocab_size=30000, hidden_size=512, intermediate_size=2048, num_hidden_layers=4,
                         num_attention_heads=8, max_position_embeddings=512)
    model = build_backbone(config)
    arrays = {name: param.asnumpy().copy() for name, param in model.named_parameters()}
    size_mb = sum(array.nbytes for array in arrays.values()) / 2**20
    before = rss_mb()
    native = to_native(model)
    grown = rss_mb() - before
    assert size_mb > 90 and grown < 0.1 * size_mb, (size_mb, grown)
    assert not list(model.parameters())
    held = dict(native.parameters_and_names())
    assert set(held) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(held[name].asnumpy(), array)


def test_requires_grad_carries_over():
    model = build_backbone(tiny_config("bert"))
    for param in model.parameters():
        param.requires_grad = False
    model.pooler.dense.weight.requires_grad = True
    trainable = [name for name, param in to_native(model).parameters_and_names() if param.requires_grad]
    assert trainable == ["pooler.dense.weight"]


def count_dropouts(cell) -> list:
    return [type(child).__name__ for _, child in cell.cells_and_names() if "Dropout" in type(child).__name__]


class SequenceOutput(nn.Cell):
    """A backbone's sequence output alone, as a graph's only output (see `ms_ptuning.native`: a None among a
    compiled graph's outputs, GPT-2's pooled output, would keep the graph from running a Dropout)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def construct(self, input_ids):
        return self.backbone(input_ids=input_ids)[0]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_dropout_where_hugging_face_applies_it(model_type):
    """One Dropout class (ms_ptuning.layers.Dropout) at each of Hugging Face's places (embeddings, then per
    layer: attention probabilities and the two output projections); active in train mode only."""
    config = config_for(model_type, **({"resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1}
                                       if model_type == "gpt2" else
                                       {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}))
    native = to_native(build_backbone(config))
    dropouts = [child for _, child in native.cells_and_names() if isinstance(child, Dropout)]
    assert len(dropouts) == 1 + 3 * config.num_hidden_layers and all(d.p == 0.1 for d in dropouts)
    assert count_dropouts(native) == ["Dropout"] * len(dropouts)
    ids = Tensor(make_batch(config, "plain", 0)["input_ids"])
    compiled = SequenceOutput(native)
    with graph_mode():
        compiled.set_train(False)
        first, second = compiled(ids).asnumpy(), compiled(ids).asnumpy()
        compiled.set_train(True)
        trained = compiled(ids).asnumpy()
    np.testing.assert_array_equal(first, second)
    assert np.abs(trained - first).max() > 1e-3


def gpt2_and_its_full_forward(seed: int):
    """A native GPT-2 in eval mode, a left-padded batch (ids, mask, positions) of `seed` with a prefix given
    as the first past (a tuple of per-layer (key, value) Tensors), and one full forward's hidden states."""
    config = config_for("gpt2")
    native = to_native(build_backbone(config))
    native.set_train(False)
    batch = make_batch(config, "prefix", seed)
    ids, mask, positions = batch["input_ids"], batch["attention_mask"], batch["position_ids"]
    parts = [Tensor(part) for part in batch["prefix"]]
    past = tuple((parts[2 * i], parts[2 * i + 1]) for i in range(config.num_hidden_layers))
    full, _ = native(input_ids=Tensor(ids), attention_mask=Tensor(mask), position_ids=Tensor(positions),
                     prefix_key_values=past)
    return config, native, (ids, mask, positions), past, full


def test_gpt2_decode_continues_the_full_forward():
    """Incremental decoding (PyNative): a prefix as the first past, three tokens, then one token at a time with
    the returned cache, left padding and explicit positions — the same hidden states as one full forward."""
    config, native, (ids, mask, positions), past, full = gpt2_and_its_full_forward(seed=5)
    pieces, cache, start = [], past, 0
    for stop in [3] + list(range(4, STEPS + 1)):
        window = {"input_ids": Tensor(ids[:, start:stop]), "position_ids": Tensor(positions[:, start:stop]),
                  "attention_mask": Tensor(mask[:, :VIRTUAL + stop])}
        hidden, cache = native.decode(cache=cache, **window)
        pieces.append(hidden.asnumpy())
        start = stop
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.asnumpy(), rtol=0, atol=1e-5)
    head_dim = config.hidden_size // config.num_attention_heads
    assert len(cache) == config.num_hidden_layers
    assert tuple(cache[0][0].shape) == (BATCH, config.num_attention_heads, VIRTUAL + STEPS, head_dim)


def test_gpt2_static_cache_step_continues_the_full_forward():
    """Compiled decoding: the prompt through GPT2Prefill, then the fixed-size-cache step (GPT2StaticStep, one
    graph for every step), one token per step written into its slot — the hidden states of one full forward (prefix, left
    padding, explicit positions)."""
    _, native, (ids, mask, positions), past, full = gpt2_and_its_full_forward(seed=7)
    prompt, size = 3, VIRTUAL + STEPS
    step, pieces = GPT2StaticStep(native), []
    with graph_mode():
        _, cache = GPT2Prefill(native)(Tensor(ids[:, :prompt]), Tensor(mask[:, :VIRTUAL + prompt]),
                                       Tensor(positions[:, :prompt]), mindspore.mutable(past))
        cache = fixed_size_cache(cache, size)
        for token in range(prompt, STEPS):
            slot = np.eye(size, dtype=np.float32)[VIRTUAL + token]
            seen = np.concatenate([mask[:, :VIRTUAL + token + 1], np.zeros((BATCH, STEPS - token - 1), np.int64)], 1)
            hidden, cache = step(Tensor(ids[:, token:token + 1]), Tensor(positions[:, token:token + 1]), Tensor(seen),
                                 Tensor(slot), mindspore.mutable(cache))
            pieces.append(hidden.asnumpy())
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full.asnumpy()[:, prompt:], rtol=0, atol=1e-5)


def test_graph_mode_returns_to_pynative_even_after_an_error():
    with pytest.raises(RuntimeError, match="inside"):
        with graph_mode():
            assert mindspore.get_context("mode") == mindspore.GRAPH_MODE
            raise RuntimeError("inside")
    assert mindspore.get_context("mode") == mindspore.PYNATIVE_MODE


class Blocks(nn.Cell):
    """Ten rounds of the native building blocks on a (8, 128, 768) activation: LayerNorm, heads split and
    merged, softmax, GELU."""

    def __init__(self):
        super().__init__()
        self.weight = mindspore.Parameter(Tensor(np.ones(768, np.float32)), name="weight", requires_grad=False)
        self.bias = mindspore.Parameter(Tensor(np.zeros(768, np.float32)), name="bias", requires_grad=False)
        self.softmax, self.gelu = F.Softmax(), F.Gelu()

    def construct(self, x):
        for _ in range(10):
            x = F.merge_heads(self.softmax(F.split_heads(F.layer_norm(x, self.weight, self.bias, 1e-12), 12)))
            x = self.gelu(x)
        return ops.reduce_sum(ops.mul(x, x))


def test_compiled_building_blocks_hold_no_buffers_per_call_site():
    """The reason for functional.py's explicit broadcasts, split/stack heads and own backward passes: written
    with broadcasting ops, transposes and `ops.div`, the same ten rounds grew resident memory by ~1.5 GB
    (~150 MB a round on 3 MB activations); these grow it by ~190 MB (compilation plus the activations the
    backward keeps, ~15 MB a round)."""
    grad = ops.GradOperation()(Blocks())
    x = Tensor(np.random.default_rng(0).standard_normal((8, 128, 768)).astype(np.float32))
    with graph_mode():
        before = rss_mb()
        grad(x).asnumpy()
        grad(x).asnumpy()
        grown = rss_mb() - before
    assert grown < 400, grown
