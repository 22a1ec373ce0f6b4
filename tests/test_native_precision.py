"""Mixed precision (fp16) on the native graph backbones: frozen weights stored in float16 except an input
embedding a head is tied to, trainable weights and AdamW moments float32, results close to float32 through
the compiled step engine (BERT, RoBERTa, and a grouped-query Llama causal LM), and an fp16 overflow skipped
through `ms_ptuning.run` on the graph backend. bf16 has no CPU kernels in MindSpore 2.7 (refused there,
tests/test_precision.py): only its storage is checked here."""

import json
import os

import mindspore
import numpy as np
import pytest
import transformers

from ms_ptuning import run as run_module
from ms_ptuning.backend import seed_everything
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.distributed import DataParallel
from ms_ptuning.models import HEADS
from ms_ptuning.native import set_compute_dtype, to_native
from ms_ptuning.training import TrainingArguments
from ms_ptuning.training.graph_steps import GraphSteps
from ms_ptuning.training.precision import LossScaler, default_loss_scaler
from ms_ptuning.weights import named_weights, trainable_weights
from tiny_backbones import tiny_config
from tiny_runs import same_process_runs, save_tiny_bert  # noqa: F401  (a fixture)

RTE_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tasks", "rte")
LOGIT_BOUND = 2.6e-4  # the eager fp16 path's measured worst case (README, "Mixed precision")


def native_classifier(model_type: str, mode: str, compute_dtype=None):
    seed_everything(0)
    return HEADS["sequence_classification"](to_native(build_backbone(tiny_config(model_type))),
                                            PTuningConfig(mode=mode, pre_seq_len=4), compute_dtype)


def batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(5, 100, (4, 8)), "attention_mask": np.ones((4, 8), np.int64),
            "labels": rng.integers(0, 2, 4)}


def engine(model, precision: str) -> GraphSteps:
    args = TrainingArguments(output_dir="unused", learning_rate=1e-2, per_device_train_batch_size=4,
                             per_device_eval_batch_size=4, report_to=[])
    return GraphSteps(model, trainable_weights(model), args, default_loss_scaler(precision), DataParallel())


@pytest.fixture(scope="module", params=[("bert", "prefix"), ("roberta", "finetune")],
                ids=lambda p: "-".join(p))
def fp32_and_fp16(request):
    """(model, eval (loss, logits), first train StepResult) for float32 and fp16, on the same weights."""
    results = {}
    for precision, dtype in (("no", None), ("fp16", mindspore.float16)):
        model = native_classifier(*request.param, compute_dtype=dtype)
        steps = engine(model, precision)
        results[precision] = (model, steps.eval_step(batch()), steps.train_step([batch(1)], [0], 1e-2), steps)
    return request.param, results


def test_fp16_stores_frozen_weights_in_float16_and_trains_float32_masters(fp32_and_fp16):
    (_, mode), results = fp32_and_fp16
    model, _, _, steps = results["fp16"]
    trainable = trainable_weights(model)
    assert {p.dtype for p in trainable.values()} == {mindspore.float32}
    moments = list(steps.optimizer.exp_avg.values()) + list(steps.optimizer.exp_avg_sq.values())
    assert {p.dtype for p in moments} == {mindspore.float32}
    frozen = {name: p.dtype for name, p in named_weights(model).items() if name not in trainable}
    if mode == "finetune":  # every weight trains: all float32, the products still in float16 (below)
        assert not frozen
        return
    assert frozen.pop("encoder.backbone.embeddings.word_embeddings.weight") == mindspore.float32  # tied heads
    assert set(frozen.values()) == {mindspore.float16}


def test_fp16_logits_loss_and_gradient_norm_are_close_to_float32(fp32_and_fp16):
    _, results = fp32_and_fp16
    (loss32, logits32), (loss16, logits16) = results["no"][1], results["fp16"][1]
    difference = float(np.abs(logits16 - logits32).max())
    assert logits16.dtype == np.float32
    assert 0 < difference < LOGIT_BOUND  # it really computed in float16 (measured 1e-5 to 2e-5), yet close
    assert abs(loss16 - loss32) < LOGIT_BOUND
    step32, step16 = results["no"][2], results["fp16"][2]
    assert step16.applied and step32.applied
    assert step16.grad_norm == pytest.approx(step32.grad_norm, rel=3e-3)  # unscaled: the true gradients


def test_fp16_overflow_is_skipped_at_a_large_scale():
    model = native_classifier("bert", "prefix", mindspore.float16)
    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=4, report_to=[])
    scaler = LossScaler("dynamic", init_scale=2.0**40)
    steps = GraphSteps(model, trainable_weights(model), args, scaler, DataParallel())
    before = {name: p.asnumpy().copy() for name, p in trainable_weights(model).items()}
    result = steps.train_step([batch()], [0], 1e-2)
    assert not result.applied and scaler.loss_scale == 2.0**39
    assert all(np.array_equal(p.asnumpy(), before[name]) for name, p in trainable_weights(model).items())


def test_a_precision_is_set_once():
    backbone = to_native(build_backbone(tiny_config("bert")))
    set_compute_dtype(backbone, mindspore.float16)
    with pytest.raises(ValueError, match="set once"):
        HEADS["sequence_classification"](backbone, PTuningConfig(mode="prefix", pre_seq_len=4), None)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        set_compute_dtype(to_native(build_backbone(tiny_config("bert"))), mindspore.float32)


def test_run_on_graph_skips_overflowing_fp16_steps(tmp_path, same_process_runs, monkeypatch):  # noqa: F811
    """`--mixed_precision fp16` through run.py on the graph backend, the loss scale started at 2**30: the
    first steps overflow, are logged as skipped with the halved scale, and the run trains on."""
    model_dir = save_tiny_bert(str(tmp_path / "model"))
    monkeypatch.setattr(run_module, "default_loss_scaler", lambda name: LossScaler("dynamic", init_scale=2.0**30))
    argv = ["--task", "rte", "--model_name_or_path", model_dir, "--data_dir", RTE_FIXTURE, "--output_dir",
            str(tmp_path / "out"), "--backend", "graph", "--mixed_precision", "fp16", "--mode", "prefix",
            "--pre_seq_len", "4", "--per_device_train_batch_size", "2", "--max_steps", "12", "--logging_steps", "1",
            "--learning_rate", "1e-2", "--max_seq_length", "32", "--save_strategy", "no", "--report_to", "none"]
    results = run_module.run(*run_module.parse(argv))
    assert results["backend"] == "graph"
    with open(tmp_path / "out" / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    skipped = [r for r in records if r.get("skipped")]
    applied = [r for r in records if "loss" in r and "skipped" not in r and "eval_loss" not in r]
    assert skipped and applied and len(skipped) + len(applied) == 12
    assert skipped[0]["step"] == 1 and skipped[0]["loss_scale"] == 2.0**29
    assert all(np.isfinite(r["loss"]) for r in applied)


LLAMA_SIZES = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=64, initializer_range=0.02)
LLAMA_CONFIGS = {  # GQA with an untied LM head; multi-query with Qwen2's tied head and q/k/v biases
    "llama": transformers.LlamaConfig(**LLAMA_SIZES, num_key_value_heads=2, tie_word_embeddings=False),
    "qwen2": transformers.Qwen2Config(**LLAMA_SIZES, num_key_value_heads=1, tie_word_embeddings=True,
                                      use_sliding_window=False),
}
LLAMA_STEPS = 6


def native_causal_lm(config_name: str, compute_dtype=None):
    seed_everything(0)
    return HEADS["causal_lm"](to_native(build_backbone(LLAMA_CONFIGS[config_name])),
                              PTuningConfig(mode="prefix", pre_seq_len=4), compute_dtype)


def token_batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(1, 97, (4, 12))
    return {"input_ids": input_ids, "attention_mask": np.ones((4, 12), np.int64), "labels": input_ids.copy()}


@pytest.fixture(scope="module")
def llama_fp32_and_fp16():
    """precision → (model, step engine, eval (loss, logits), losses of LLAMA_STEPS prefix steps on one batch)."""
    results = {}
    for precision, dtype in (("no", None), ("fp16", mindspore.float16)):
        model = native_causal_lm("llama", dtype)
        steps = engine(model, precision)
        evaluated = steps.eval_step(token_batch())
        losses = [steps.train_step([token_batch(1)], [step], 1e-2).loss for step in range(LLAMA_STEPS)]
        results[precision] = model, steps, evaluated, np.array(losses)
    return results


def test_llama_fp16_stores_the_frozen_backbone_in_float16(llama_fp32_and_fp16):
    """Every frozen weight in float16: the backbone's (RMSNorm weights too, widened where they are used; the
    input embedding too, no head being tied to it) and the frozen untied LM head's; the prefix and its AdamW
    moments float32."""
    model, steps, _, _ = llama_fp32_and_fp16["fp16"]
    trainable = trainable_weights(model)
    assert list(trainable) == ["encoder.prefix_encoder.embedding.weight"]
    assert {p.dtype for p in trainable.values()} == {mindspore.float32}
    moments = list(steps.optimizer.exp_avg.values()) + list(steps.optimizer.exp_avg_sq.values())
    assert {p.dtype for p in moments} == {mindspore.float32}
    frozen = {name: p.dtype for name, p in named_weights(model).items() if name not in trainable}
    assert {"lm_head.weight", "encoder.backbone.embed_tokens.weight"} <= set(frozen)
    assert "encoder.backbone.embed_tokens.weight" in frozen and "encoder.backbone.norm.weight" in frozen
    assert set(frozen.values()) == {mindspore.float16}


@pytest.mark.parametrize("dtype", [mindspore.float16, mindspore.bfloat16], ids=["fp16", "bf16"])
def test_a_tied_qwen2_head_keeps_its_embedding_float32(dtype):
    """Qwen2's LM head multiplies by the input embedding in float32, so that one frozen weight stays float32."""
    frozen = {name: p.dtype for name, p in named_weights(native_causal_lm("qwen2", dtype)).items()
              if not p.requires_grad}
    assert frozen.pop("encoder.backbone.embed_tokens.weight") == mindspore.float32
    assert "encoder.backbone.layers.0.self_attn.q_proj.bias" in frozen and set(frozen.values()) == {dtype}


def test_llama_fp16_logits_and_training_stay_close_to_float32(llama_fp32_and_fp16):
    """fp16 products, float32 RMSNorm/softmax/rotary/loss: logits within 2e-3 of their scale (measured 5.2e-4),
    and the same prefix-tuning run (6 AdamW steps at lr 1e-2) within 1e-3 relative per step (measured 4.7e-6),
    falling."""
    (loss32, logits32), (loss16, logits16) = llama_fp32_and_fp16["no"][2], llama_fp32_and_fp16["fp16"][2]
    assert logits16.dtype == np.float32
    relative = float(np.abs(logits16 - logits32).max()) / float(np.abs(logits32).max())
    assert 0 < relative < 2e-3  # it really computed in float16, yet close
    assert abs(loss16 - loss32) < 1e-3 * abs(loss32)
    losses32, losses16 = llama_fp32_and_fp16["no"][3], llama_fp32_and_fp16["fp16"][3]
    print(f"llama fp16 vs fp32: logits rel {relative:.1e}, losses max-rel "
          f"{float(np.max(np.abs(losses16 - losses32) / losses32)):.1e}, {losses16[0]:.4f} -> {losses16[-1]:.4f}")
    assert losses16[-1] < losses16[0] - 0.01  # it trains
    np.testing.assert_allclose(losses16, losses32, rtol=1e-3)
