"""Adapters that travel (ms_ptuning.interop), judged by the real libraries in their own process
(tests/interop_reference.py: torch, transformers 4.56, peft 0.17):

- import: peft adapters trained and saved by real peft on tiny BERT / RoBERTa / GPT-2, and THUDM/P-tuning-v2
  output directories (THUDM's parameter names, one as pytorch_model.bin), give peft's / the reference's logits
  here; unsupported pairs are refused with the difference named;
- export: ms_ptuning adapters written as peft adapters load with `PeftModel.from_pretrained` and give our
  logits; written in THUDM's layout they load strictly into modules with THUDM's attribute names and give
  our logits through the reference heads;
- a peft PrefixTuning adapter trained in torch on the shipped all-MiniLM-L6-v2 predicts the same labels on
  Rotten Tomatoes snippets through `ms-ptuning predict --adapter` as through peft;
- `--init_from` starts a run from a peft adapter, and refuses adapters that do not fit the run.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from ms_ptuning.backend import torch  # noqa: F401  (mindnlp before transformers)
from ms_ptuning.adapters import save_adapter
from ms_ptuning.api import build_adapter_model, to_inputs
from ms_ptuning.backbones import load_backbone, load_tokenizer
from ms_ptuning.cli import main as ms_ptuning_command
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.packaged import minilm_dir, read_rotten_tomatoes
from ms_ptuning.interop.export import export
from ms_ptuning.interop.init_from import init_from
from ms_ptuning.models import HEADS
from ms_ptuning.predict import main as predict_main
from ms_ptuning.weights import assign_weights, named_weights, trainable_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 1e-5  # fp32 max |Δlogits|


def reference(command: str, directory) -> dict:
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "interop_reference.py"), command,
                             str(directory)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def logits(model, head: str, batch: dict) -> np.ndarray:
    model.set_train(False)
    _, output = model(**to_inputs(batch))
    if head == "question_answering":
        return np.stack([part.asnumpy() for part in output])
    return output.asnumpy()


def case_inputs(case: dict) -> dict:
    return {name: np.asarray(case[name]) for name in ("input_ids", "attention_mask", "token_type_ids") if name in case}


# (name, base, head, mode, PTuningConfig options, formats): ms_ptuning adapters to export
EXPORTS = [("bert_seqcls_prefix_projection", "bert", "sequence_classification", "prefix",
            dict(prefix_projection=True, prefix_hidden_size=16), ("peft", "thudm")),
           ("roberta_token_prompt_mlp", "roberta", "token_classification", "prompt",
            dict(prompt_encoder_type="mlp"), ("peft",)),
           ("bert_qa_prefix", "bert", "question_answering", "prefix", {}, ("peft", "thudm")),
           ("gpt2_lm_prefix", "gpt2", "causal_lm", "prefix", {}, ("peft",)),
           ("gpt2_lm_prompt_lstm", "gpt2", "causal_lm", "prompt", dict(prompt_encoder_type="lstm"), ("peft",)),
           ("roberta_token_prefix", "roberta", "token_classification", "prefix", {}, ("peft", "thudm")),
           ("bert_mc_prefix", "bert", "multiple_choice", "prefix", {}, ("thudm",)),
           ("roberta_seqcls_finetune", "roberta", "sequence_classification", "finetune", {}, ("thudm",))]
# (base, head, mode, target, words of the refusal)
REFUSED_EXPORTS = [("bert", "sequence_classification", "prompt", "peft", "first virtual token"),
                   ("roberta", "sequence_classification", "prefix", "peft", "key/value cache"),
                   ("bert", "multiple_choice", "prefix", "peft", "no multiple-choice task type"),
                   ("bert", "sequence_classification", "finetune", "peft", "frozen base model"),
                   ("bert", "sequence_classification", "prompt", "thudm", "LayerNorm applied twice"),
                   ("gpt2", "causal_lm", "prefix", "thudm", "no prefix model class")]


def our_adapter(directory: str, name: str, base: str, head: str, mode: str, options: dict, seed: int = 0):
    """A model with moved trainable weights, saved as an ms_ptuning adapter over `base`."""
    model = HEADS[head](load_backbone(base), PTuningConfig(mode=mode, pre_seq_len=4, num_labels=3, **options))
    rng = np.random.default_rng(seed)
    assign_weights(model, {key: (value.asnumpy() + rng.normal(0, 0.05, value.shape)).astype(np.float32)
                           for key, value in trainable_weights(model).items()}, strict=False)
    path = os.path.join(directory, "ours", name)
    save_adapter(model, path, base_model=base, labels=["a", "b", "c"])
    return model, path


def test_adapters_travel_between_ms_ptuning_peft_and_thudm(tmp_path, capsys):
    reference("make", tmp_path)
    with open(tmp_path / "made.json") as handle:
        made = json.load(handle)
    differences = {}

    # peft → ms_ptuning: peft's own adapters, as real peft saved them
    for name, case in made["peft"].items():
        if name.endswith("_refused"):
            with pytest.raises(ValueError, match="first virtual token"):
                build_adapter_model(case["adapter"], backend="eager")
            continue
        model, saved, _ = build_adapter_model(case["adapter"], backend="eager")
        assert saved["base_model"] == os.path.abspath(case["base"])
        expected = np.load(os.path.join(case["adapter"], "expected_logits.npy"))
        differences[f"import peft {name}"] = float(np.abs(logits(model, case["head"], case_inputs(case)) - expected).max())

    # THUDM → ms_ptuning: full state dicts under THUDM's names (the first as pytorch_model.bin)
    for index, (name, case) in enumerate(made["thudm"].items()):
        if index == 0:
            with pytest.raises(ValueError, match="--allow_pickle"):
                build_adapter_model(case["adapter"], backend="eager")
        model, _, _ = build_adapter_model(case["adapter"], backend="eager", allow_pickle=index == 0)
        expected = np.load(os.path.join(case["adapter"], "expected_logits.npy"))
        differences[f"import {name}"] = float(np.abs(logits(model, case["head"], case_inputs(case)) - expected).max())

    # ms_ptuning → peft / THUDM
    bases = {model_type: str(tmp_path / f"base_{model_type}") for model_type in ("bert", "roberta", "gpt2")}
    exports = {}
    for seed, (name, model_type, head, mode, options, formats) in enumerate(EXPORTS):
        model, path = our_adapter(str(tmp_path), name, bases[model_type], head, mode, options, seed)
        batch = case_inputs(made["peft"]["bert_qa_prefix"])  # (3, 9) ids < 100, padding in row 1
        if model_type == "gpt2":
            batch["attention_mask"] = np.ones_like(batch["attention_mask"])
        if head == "multiple_choice":
            batch = {key: value.reshape(1, 3, 9) for key, value in batch.items()}
        np.save(os.path.join(path, "logits.npy"), logits(model, head, batch))
        for target in formats:
            output = export(path, target, str(tmp_path / "exported" / f"{name}_{target}"))
            exports[f"{name}_{target}"] = {"format": target, "output": output, "head": head, "model_type": model_type,
                                           "base": bases[model_type], "logits": os.path.join(path, "logits.npy"),
                                           **({"num_labels": 3} if head != "question_answering" and
                                              head != "causal_lm" else {}),
                                           **{key: value.tolist() for key, value in batch.items()}}
    for model_type, head, mode, target, words in REFUSED_EXPORTS:
        _, path = our_adapter(str(tmp_path), f"refused_{model_type}_{head}_{mode}", bases[model_type], head, mode, {})
        with pytest.raises(ValueError, match=words):
            export(path, target, str(tmp_path / "refused"))
        assert not os.path.exists(tmp_path / "refused")
    assert ms_ptuning_command(["export", "--adapter", path, "--to", "thudm", "--output", str(tmp_path / "refused")]) == 2
    assert "no prefix model class for the causal_lm head" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--overwrite"):  # nothing the user has is replaced unasked
        export(str(tmp_path / "ours" / "bert_qa_prefix"), "peft", exports["bert_qa_prefix_peft"]["output"])

    # the demo's model: an ms_ptuning prefix adapter on all-MiniLM-L6-v2, exported, predicts through peft
    texts = [row["text"] for row in read_rotten_tomatoes()[:12]]
    tokenizer = load_tokenizer(minilm_dir())
    encoded = {key: np.asarray(value) for key, value in tokenizer(texts, padding=True, truncation=True,
                                                                  max_length=64).items()}
    model, path = our_adapter(str(tmp_path), "minilm_prefix", minilm_dir(), "sequence_classification", "prefix", {})
    minilm_logits = logits(model, "sequence_classification", encoded)
    np.save(os.path.join(path, "logits.npy"), minilm_logits)
    exports["minilm_prefix_peft"] = {"format": "peft", "output": export(path, "peft", str(tmp_path / "minilm_peft_out")),
                                     "head": "sequence_classification", "model_type": "bert", "base": minilm_dir(),
                                     "logits": os.path.join(path, "logits.npy"), "num_labels": 3,
                                     "labels": minilm_logits.argmax(-1).tolist(),
                                     **{key: value.tolist() for key, value in encoded.items()}}
    with open(tmp_path / "exports.json", "w") as handle:
        json.dump(exports, handle)
    checked = reference("check", tmp_path)
    for name, value in checked.items():
        differences[name if name.endswith("labels_equal") else f"export {name}"] = value

    print(json.dumps(differences, indent=1))
    assert len(differences) == 8 + 7 + 12 + 1  # peft imports, THUDM imports, exports, MiniLM labels
    for name, value in differences.items():
        if name.endswith("labels_equal"):
            assert value == 1.0, name
        else:
            assert value <= LIMIT, (name, value)

    # a peft PrefixTuning adapter trained in torch on all-MiniLM-L6-v2: the same labels through the CLI
    minilm = made["minilm"]
    output = tmp_path / "predictions.jsonl"
    assert predict_main(["--adapter", minilm["adapter"], "--input", minilm["input"], "--output", str(output),
                         "--disable_tqdm"]) == 0
    predicted = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row["label"] for row in predicted] == minilm["labels"]
    ours = np.array([[row["probabilities"][label] for label in ("0", "1")] for row in predicted])
    assert float(np.abs(ours - np.array(minilm["probabilities"])).max()) <= LIMIT

    # --init_from: a run starts from the peft adapter; adapters that do not fit it are refused
    from ms_ptuning.arguments import ModelArguments
    from ms_ptuning.run import build_model
    from ms_ptuning.summarization import ModelArguments as SummarizationArguments, build_model as summarization_model
    task = SimpleNamespace(head="sequence_classification", num_labels=2, problem_type="single_label_classification")
    run_model, _ = build_model(ModelArguments(model_name_or_path=minilm_dir(), mode="prefix", pre_seq_len=8,
                                              init_from=minilm["adapter"], backend="eager"), task, "no", 64)
    peft_table = load_peft_table(minilm["adapter"])
    np.testing.assert_array_equal(named_weights(run_model)["encoder.prefix_encoder.embedding.weight"].asnumpy(),
                                  peft_table)
    with pytest.raises(ValueError, match="pre_seq_len is 8, the run's 4; pass --pre_seq_len 8"):
        build_model(ModelArguments(model_name_or_path=minilm_dir(), mode="prefix", pre_seq_len=4,
                                   init_from=minilm["adapter"], backend="eager"), task, "no", 64)
    gpt2_prefix = made["peft"]["gpt2_lm_prefix"]["adapter"]  # summarization's --init_from
    lm, _ = summarization_model(SummarizationArguments(model_name_or_path=bases["gpt2"], mode="prefix", pre_seq_len=4,
                                                       init_from=gpt2_prefix, backend="eager"),
                                range(100), max_length=16)  # the checks need only len(tokenizer)
    np.testing.assert_array_equal(named_weights(lm)["encoder.prefix_encoder.embedding.weight"].asnumpy(),
                                  load_peft_table(gpt2_prefix))
    thudm_prefix = made["thudm"]["thudm_bert_question_answering_prefix"]["adapter"]
    qa_model = HEADS["question_answering"](load_backbone(bases["bert"]), PTuningConfig(mode="prefix", pre_seq_len=4))
    with pytest.raises(ValueError, match="differs from the base model's, and the run keeps it frozen"):
        init_from(qa_model, thudm_prefix, bases["bert"])


def load_peft_table(directory: str) -> np.ndarray:
    from safetensors.numpy import load_file
    return load_file(os.path.join(directory, "adapter_model.safetensors"))["prompt_embeddings"]


def test_bad_foreign_adapters_are_refused_naming_file_and_field(tmp_path):
    """No reference process needed: the checks run before any weight is read."""
    from ms_ptuning.interop import read_adapter
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "SEQ_CLS"}))
    with pytest.raises(ValueError, match=r"adapter_config.json: field 'peft_type' is 'LORA'"):
        read_adapter(str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "PREFIX_TUNING", "task_type": "SEQ_CLS", "base_model_name_or_path": minilm_dir(),
        "num_virtual_tokens": 4, "token_dim": 768, "num_layers": 6, "num_attention_heads": 12}))
    with pytest.raises(ValueError, match=r"field 'token_dim' is 768, but the base model .* has 384"):
        read_adapter(str(adapter))
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "PREFIX_TUNING", "task_type": "SEQ_2_SEQ_LM", "base_model_name_or_path": minilm_dir()}))
    with pytest.raises(ValueError, match=r"field 'task_type' is 'SEQ_2_SEQ_LM'"):
        read_adapter(str(adapter))
    with pytest.raises(FileNotFoundError, match="is not an adapter directory"):
        read_adapter(str(tmp_path))
