"""Causal LMs without a native backbone (`ms_ptuning.hf_backbone.HFCausalLM`), P-tuned eagerly through their own
cache interface, against real transformers + real peft (`get_peft_model` with PREFIX_TUNING / PROMPT_TUNING
holding the same table) in their own process (tests/eager_decoders_reference.py).

Tiny random models, saved as safetensors and loaded as `ms_ptuning.chat` loads them: Mistral (grouped-query
attention, 2 key/value heads for 4, rotary) and GPT-NeoX (fused query/key/value, partial rotary, parallel
residual) in prefix and prompt mode, OPT (learned positions offset by 2, LayerNorm, ReLU, tied output layer)
and BLOOM (ALiBi, its forward takes no position ids) in prefix mode. Logits within 1e-5, the table's gradient
within 1e-4 relative, greedy generation (and beam search on two cases; batched, left-padded) token for token
equal to peft's `generate` (one prompt at a time), and the adapter exported to peft loads there with the same logits. Models that cannot take
a prefix are refused by name, the graph backend refuses them all, and `ms-ptuning chat` trains and generates
on one eagerly."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ms_ptuning.backend import torch  # noqa: F401  (mindnlp before transformers)
import transformers
from safetensors.numpy import load_file, save_file

from ms_ptuning import api
from ms_ptuning.adapters import save_adapter
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.execution import choose_backend
from ms_ptuning.generation import GenerationConfig, generate
from ms_ptuning.interop.export import export
from ms_ptuning.models import CausalLM
from ms_ptuning.parity import differences
from ms_ptuning.weights import assign_weights, named_weights

VOCAB, EOS, PAD, P = 97, 5, 0, 3
CONFIGS = {
    "mistral": transformers.MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                          sliding_window=None, rope_theta=1000.0),
    "gpt_neox": transformers.GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                           num_attention_heads=4, rotary_pct=0.5, max_position_embeddings=64,
                                           use_parallel_residual=True),
    "opt": transformers.OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=48, num_hidden_layers=2,
                                  num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64,
                                  pad_token_id=PAD, bos_token_id=1, eos_token_id=EOS),
    "bloom": transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4),
}
CASES = [("mistral", "prefix"), ("mistral", "prompt"), ("gpt_neox", "prefix"), ("gpt_neox", "prompt"),
         ("opt", "prefix"), ("bloom", "prefix")]
PROMPTS = [[7, 17, 23, 42, 8], [60, 3], [71, 29, 33, 14, 90, 52, 12]]
BEAM_CASES = [("mistral", "prefix"), ("gpt_neox", "prompt")]  # beam search costs seconds per case: two
MAX_NEW_TOKENS = 6


def batch():
    """Right-padded rows, loss on the last tokens only; the first token is never a target (peft's prompt mode
    also trains the last prompt to predict it, ms_ptuning's CausalLM scores real-token predictions only)."""
    rng = np.random.default_rng(0)
    input_ids = rng.integers(6, VOCAB, (3, 9)).astype(np.int64)
    attention_mask = np.ones((3, 9), np.int64)
    attention_mask[1, 6:] = 0
    attention_mask[2, 3:] = 0
    input_ids[attention_mask == 0] = PAD
    labels = np.where(attention_mask == 1, input_ids, -100)
    labels[0, :4] = -100
    labels[:, 0] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def save_random_model(config, directory, seed: int) -> None:
    """config.json + model.safetensors with every weight random: N(0, 0.1), norm weights (BLOOM's final `ln_f`
    included) 1 + N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, param in build_backbone(config, causal_lm=True).named_parameters():
        noise = rng.standard_normal(tuple(param.shape)).astype(np.float32)
        state[name] = 1.0 + 0.1 * noise if ("norm" in name or "ln_f" in name) and name.endswith("weight") \
            else 0.1 * noise
    os.makedirs(directory)
    config.save_pretrained(directory)
    save_file(state, os.path.join(directory, "model.safetensors"))


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """(architecture, mode) → (our model, the reference's outputs, peft's generations)."""
    root = tmp_path_factory.mktemp("eager_decoders")
    models, workdirs = {}, {}
    for index, (name, mode) in enumerate(CASES):
        workdir = workdirs[name, mode] = root / f"{name}_{mode}"
        save_random_model(CONFIGS[name], str(workdir / "model"), index)
        model = models[name, mode] = api.build_model(str(workdir / "model"), head="causal_lm", mode=mode,
                                                     pre_seq_len=P, prefix_dropout=0.0)
        table_name = f"encoder.{mode}_encoder.embedding.weight"
        table = (0.5 * np.random.default_rng(100 + index).standard_normal(
            tuple(named_weights(model)[table_name].shape))).astype(np.float32)
        assign_weights(model, {table_name: table}, strict=False, source="test table")
        save_file({"table": table}, str(workdir / "table.safetensors"))
        save_adapter(model, str(workdir / "adapter"), base_model=str(workdir / "model"))
        export(str(workdir / "adapter"), "peft", str(workdir / "peft"))
        save_file(batch(), str(workdir / "batch.safetensors"))
        with open(workdir / "spec.json", "w") as handle:
            json.dump({"mode": mode, "num_virtual_tokens": P, "prompts": PROMPTS, "max_new_tokens": MAX_NEW_TOKENS,
                       "eos_token_id": EOS, "pad_token_id": PAD, "beam": (name, mode) in BEAM_CASES}, handle)
    script = os.path.join(os.path.dirname(__file__), "eager_decoders_reference.py")
    finished = subprocess.run([sys.executable, script, *map(str, workdirs.values())], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-4000:]
    results = {}
    for key, workdir in workdirs.items():
        reference = load_file(str(workdir / "reference.safetensors"))
        reference[f"grad.encoder.{key[1]}_encoder.embedding.weight"] = reference.pop("grad.table")
        with open(workdir / "generations.json") as handle:
            results[key] = (models[key], reference, json.load(handle))
    return results


@pytest.mark.parametrize("name, mode", CASES)
def test_logits_loss_and_gradient_match_peft(cases, name, mode):
    model, reference, _ = cases[name, mode]
    assert type(model.backbone).__name__ == "HFCausalLM"
    result = differences(model, batch(), reference)
    print(name, mode, {k: v for k, v in result.items() if k != "grad_rel"})
    assert result["logits_max_abs"] <= 1e-5 and result["loss_abs"] <= 1e-5
    assert result["grad_max_rel"] <= 1e-4 and result["num_trainable_tensors"] == 1


@pytest.mark.parametrize("name, mode", CASES)
def test_exported_adapter_loads_in_peft_with_the_same_logits(cases, name, mode):
    """`ms-ptuning export --to peft` of the adapter, loaded by `PeftModel.from_pretrained` over the base model."""
    model, reference, _ = cases[name, mode]
    model.set_train(False)
    _, logits = model(**{key: torch.tensor(value) for key, value in batch().items() if key != "labels"})
    assert np.abs(logits.asnumpy() - reference["exported_logits"]).max() <= 1e-5


GENERATIONS = [(name, mode, "greedy") for name, mode in CASES] + [(name, mode, "beam") for name, mode in BEAM_CASES]


@pytest.mark.parametrize("name, mode, search", GENERATIONS)
def test_generation_equals_peft_generate(cases, name, mode, search):
    model, _, reference = cases[name, mode]
    config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS, num_beams=1 if search == "greedy" else 3,
                              eos_token_id=EOS, pad_token_id=PAD, batch_size=len(PROMPTS))
    ours = generate(model, PROMPTS, config)
    assert ours == reference[search]
    assert len({token for tokens in ours for token in tokens}) >= 3  # not a trivially constant decode


def test_models_that_cannot_take_a_prefix_are_refused():
    """Multi-query Falcon caches one key/value head where its config (as peft reads it) gives four; Mamba's
    forward takes no past_key_values. Both name the model type and point to prompt mode."""
    prefix = PTuningConfig(mode="prefix", pre_seq_len=2)
    falcon = transformers.FalconConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       new_decoder_architecture=False, multi_query=True)
    with pytest.raises(ValueError, match="falcon cannot take a prefix.*--mode prompt"):
        CausalLM(build_backbone(falcon, causal_lm=True), prefix)
    mamba = transformers.MambaConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, state_size=4)
    with pytest.raises(ValueError, match="mamba cannot take a prefix.*no past_key_values.*--mode prompt"):
        CausalLM(build_backbone(mamba, causal_lm=True), prefix)


def test_graph_backend_and_other_heads_refuse_them():
    with pytest.raises(ValueError, match="no native graph-mode backbone for 'mistral'"):
        choose_backend("graph", "mistral")
    assert choose_backend("auto", "mistral").name == "eager"
    with pytest.raises(ValueError, match="'mistral'.*loads as a causal LM only"):
        build_backbone(CONFIGS["mistral"])


def test_chat_trains_and_generates_on_the_eager_backend(tmp_path, capsys):
    """`ms-ptuning chat` on a tiny Mistral (bert-base-chinese vocabulary, tests/fixtures/chat): the auto backend
    runs it eagerly, 4 prefix steps on the 7 usable records (one batch) lower the loss, generations are written
    and scored, and the saved adapter generates the same on its own."""
    from ms_ptuning.api import load_adapter
    from ms_ptuning.cli import main
    from ms_ptuning.data.nlpcc2017 import default_vocab_file
    from test_chat import DEV, TRAIN

    tokenizer = transformers.BertTokenizerFast(vocab_file=default_vocab_file(), do_lower_case=False)
    config = transformers.MistralConfig(**{**CONFIGS["mistral"].to_dict(), "vocab_size": len(tokenizer),
                                           "max_position_embeddings": 128})
    model_dir, output = tmp_path / "tiny_mistral", tmp_path / "out"
    save_random_model(config, str(model_dir), 7)
    tokenizer.save_pretrained(str(model_dir))
    status = main(["chat", "--model_name_or_path", str(model_dir), "--train_file", TRAIN, "--validation_file", DEV,
                   "--history_column", "history", "--output_dir", str(output), "--mode", "prefix", "--pre_seq_len", "4",
                   "--learning_rate", "2e-1", "--max_steps", "4", "--per_device_train_batch_size", "8",
                   "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                   "--max_source_length", "24", "--max_target_length", "8", "--max_new_tokens", "4", "--seed", "3",
                   "--report_to", "none", "--disable_tqdm", "True"])
    assert status == 0, capsys.readouterr().err[-3000:]
    results = json.loads((output / "results.json").read_text())
    assert results["backend"] == "eager" and results["mode"] == "prefix" and results["global_step"] == 4
    losses = [json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.1, losses
    generated = [json.loads(line) for line in (output / "generated_predictions.jsonl").read_text().splitlines()]
    assert len(generated) == 3 and all(np.isfinite(g["rouge-1"]) for g in generated)
    adapter = load_adapter(str(output / "adapter"), generation={"max_new_tokens": 4}, backend="auto")
    assert adapter.backend.name == "eager"
    predicted = adapter.predict([{"prompt": g["prompt"]} for g in generated[:1]])
    assert predicted[0]["generated"] == generated[0]["predict"]
