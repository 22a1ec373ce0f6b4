"""Prompt/response (chat) P-tuning, ms_ptuning.chat: records encoded as ChatGLM-6B's ptuning/main.py does
(plain "[Round i]" history or the tokenizer's chat template, source/target truncation), labels only on the
response, the loss equal to the mean cross-entropy over the response tokens computed here from the logits,
ROUGE/BLEU as ChatGLM's formula gives them, and end to end on a tiny Llama (prefix mode, graph backend):
trained, generations written and scored, and `ms-ptuning predict` on the adapter writing the same
generations."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ms_ptuning.backend import seed_everything, torch  # mindnlp before transformers
import transformers

from ms_ptuning.backbones import build_backbone
from ms_ptuning.api import load_adapter
from ms_ptuning.chat.data import ChatFormat, chat_dataset, decode_text, read_examples
from ms_ptuning.chat.metrics import corpus_scores, example_scores
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.nlpcc2017 import default_vocab_file
from ms_ptuning.generation import GenerationConfig, generate
from ms_ptuning.models.causal_lm import CausalLM
from ms_ptuning.tasks.base import TaskDataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "chat")
TRAIN, DEV = os.path.join(FIXTURES, "train.jsonl"), os.path.join(FIXTURES, "dev.jsonl")
TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def tokenizer():
    """bert-base-chinese's WordPiece vocabulary (shipped offline in cn_clip), no chat template."""
    return transformers.BertTokenizerFast(vocab_file=default_vocab_file(), do_lower_case=False)


def tiny_llama(vocab_size: int) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    tie_word_embeddings=True, initializer_range=0.2)


def test_plain_format_with_history_and_labels_on_the_response_only(tokenizer):
    examples, skipped = read_examples(TRAIN, "prompt", "response", "history")
    assert skipped == 1 and len(examples) == 7  # the empty response is skipped, as ChatGLM's main.py does
    chat_format = ChatFormat(max_source_length=40, max_target_length=12)
    dataset = chat_dataset(examples, tokenizer, chat_format).columns
    row = 4  # the record with a history
    prompt = "[Round 0]\n问：你好\n答：你好，有什么可以帮你？\n[Round 1]\n问：今天天气怎么样？\n答："
    source = tokenizer(prompt)["input_ids"]  # [CLS] ... [SEP]
    target = tokenizer("今天天气很好，适合出门。", add_special_tokens=False)["input_ids"][:11] + [tokenizer.sep_token_id]
    assert len(source) <= 40 and len(target) == 12  # the response is cut to max_target_length, [SEP] included
    length = len(source) + len(target)
    np.testing.assert_array_equal(dataset["input_ids"][row, :length], source + target)
    assert (dataset["labels"][row, :len(source)] == -100).all()
    np.testing.assert_array_equal(dataset["labels"][row, len(source):length], target)
    assert (dataset["labels"][row, length:] == -100).all() and (dataset["attention_mask"][row, length:] == 0).all()
    assert dataset["attention_mask"][row, :length].all()
    long_prompt = ChatFormat(max_source_length=6, max_target_length=12).source_ids(tokenizer, "一二三四五六七八九十")
    assert long_prompt == [tokenizer.cls_token_id, *tokenizer("一二三四", add_special_tokens=False)["input_ids"],
                           tokenizer.sep_token_id]  # the first tokens are kept


def test_chat_template_builds_the_prompt_when_the_tokenizer_has_one(tokenizer):
    templated = transformers.BertTokenizerFast(vocab_file=default_vocab_file(), do_lower_case=False)
    templated.chat_template = TEMPLATE
    chat_format = ChatFormat.for_tokenizer(templated, 64, 16)
    assert chat_format.use_chat_template and not ChatFormat.for_tokenizer(tokenizer, 64, 16).use_chat_template
    text = "<user>你好<assistant>你好！<user>明天呢？<assistant>"
    assert chat_format.prompt_text(templated, "明天呢？", [["你好", "你好！"]]) == text
    assert chat_format.source_ids(templated, "明天呢？", [["你好", "你好！"]]) == \
        templated(text, add_special_tokens=False)["input_ids"]


def test_bad_records_are_refused_with_their_place(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": "b", "history": [["q"]]}\n')
    with pytest.raises(TaskDataError, match=r"bad.jsonl:2.*history.*\[query, response\] pair"):
        read_examples(str(bad), "prompt", "response", "history")
    bad.write_text('{"prompt": "a", "answer": "b"}\n')
    with pytest.raises(TaskDataError, match=r"bad.jsonl:1.*response.*missing"):
        read_examples(str(bad), "prompt", "response")


def test_the_command_stops_on_a_missing_file_with_its_name(tokenizer, tmp_path, capsys):
    from ms_ptuning.cli import main

    tokenizer.save_pretrained(str(tmp_path))
    status = main(["chat", "--model_name_or_path", str(tmp_path), "--train_file", str(tmp_path / "none.jsonl"),
                   "--validation_file", DEV, "--output_dir", str(tmp_path / "out")])
    assert status == 2 and f"{tmp_path / 'none.jsonl'}: file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_loss_is_the_mean_cross_entropy_over_the_response_tokens(tokenizer):
    examples, _ = read_examples(TRAIN, "prompt", "response", "history")
    batch = chat_dataset(examples[:4], tokenizer, ChatFormat(32, 16)).columns
    model = CausalLM(build_backbone(tiny_llama(len(tokenizer))), PTuningConfig(mode="prefix", pre_seq_len=3))
    model.set_train(False)
    loss, logits = model(**{name: torch.tensor(value) for name, value in batch.items()})
    logits = np.asarray(logits.asnumpy(), np.float64)  # (B, T, V)
    labels = batch["labels"]
    nll = []
    for row, column in zip(*np.nonzero(labels[:, 1:] != -100)):  # logits at t predict the token at t + 1
        scores = logits[row, column]
        log_z = scores.max() + np.log(np.exp(scores - scores.max()).sum())
        nll.append(log_z - scores[labels[row, column + 1]])
    response_tokens = sum(len(ChatFormat(32, 16).target_ids(tokenizer, e.response)) for e in examples[:4])
    assert len(nll) == response_tokens  # every response token (and its end token), nothing else
    np.testing.assert_allclose(float(loss.asnumpy()), np.mean(nll), rtol=1e-5)


def test_metrics_follow_chatglms_formula():
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    pairs = [("这款白色上衣风格休闲。", "这款白色上衣风格休闲。"), ("黑色裤子很时尚", "黑色裤子简约时尚。"),
             ("", "明天也是晴天。")]
    for prediction, reference in pairs[:2]:  # ChatGLM's lines, written out
        rouge = Rouge().get_scores(" ".join(jieba.cut(prediction)), " ".join(jieba.cut(reference)))[0]
        bleu = sentence_bleu([list(reference)], list(prediction), smoothing_function=SmoothingFunction().method3)
        expected = {**{name: round(rouge[name]["f"] * 100, 4) for name in ("rouge-1", "rouge-2", "rouge-l")},
                    "bleu-4": round(bleu * 100, 4)}
        assert example_scores(prediction, reference) == expected
    assert example_scores(*pairs[0]) == {"rouge-1": 100.0, "rouge-2": 100.0, "rouge-l": 100.0, "bleu-4": 100.0}
    assert example_scores(*pairs[2]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0, "bleu-4": 0.0}
    means, _ = corpus_scores([p for p, _ in pairs], [r for _, r in pairs])
    assert means["rouge-1"] == pytest.approx(np.mean([example_scores(*pair)["rouge-1"] for pair in pairs]))


def write_tiny_llama(directory, tokenizer) -> None:
    """A local model directory as a user has one: config, safetensors weights, tokenizer files."""
    seed_everything(0)
    build_backbone(tiny_llama(len(tokenizer))).save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))


def run_command(*argv, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=ROOT, **env))
    assert result.returncode == 0, result.stderr[-4000:]
    return result


SCRIPT_FLAGS = ["--history_column", "history", "--pre_seq_len", "4", "--backend", "graph", "--learning_rate", "1e-1",
                "--max_steps", "12", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
                "--logging_steps", "1", "--save_strategy", "no", "--max_source_length", "40",
                "--max_target_length", "16", "--max_new_tokens", "8", "--seed", "3"]


@pytest.fixture(scope="module")
def script_run(tokenizer, tmp_path_factory):
    """scripts/run_chat_ptuning.sh with its ChatGLM defaults cut down to a tiny run: 12 prefix steps on the
    graph backend, 6 epochs of the 7 usable training records in batches of 4 → (model dir, output dir)."""
    base = tmp_path_factory.mktemp("chat_script")
    model_dir, output = base / "tiny_llama", base / "out"
    write_tiny_llama(model_dir, tokenizer)
    run_command("bash", os.path.join(ROOT, "scripts", "run_chat_ptuning.sh"), str(model_dir), TRAIN, DEV,
                *SCRIPT_FLAGS, OUTPUT_DIR=str(output))
    return model_dir, output


def test_chat_script_trains_generates_scores_and_predict_writes_the_same(tokenizer, script_run, tmp_path):
    """The script's run trains (the last epoch's losses below the first's), generates, scores, and
    `ms-ptuning predict` on its adapter writes the same generations."""
    _, output = script_run
    results = json.loads((output / "results.json").read_text())
    assert results["backend"] == "graph" and results["mode"] == "prefix" and results["global_step"] == 12
    assert results["skipped_records"] == {"train": 1, "validation": 0} and results["eval_examples"] == 3
    assert np.isfinite(results["eval_loss"])
    losses = [json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 12 and np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.1, losses  # last epoch vs first
    generated = [json.loads(line) for line in (output / "generated_predictions.jsonl").read_text().splitlines()]
    assert [g["labels"] for g in generated] == ["这款白色上衣风格休闲。", "黑色裤子简约时尚。", "明天也是晴天。"]
    assert [g["line"] for g in generated] == [1, 2, 3]
    for name in ("rouge-1", "rouge-2", "rouge-l", "bleu-4"):  # reported: the mean of each record's score
        assert [g[name] for g in generated] == [example_scores(g["predict"], g["labels"])[name] for g in generated]
        assert results[f"eval_{name}"] == pytest.approx(np.mean([g[name] for g in generated]))
    adapter = json.loads((output / "adapter" / "adapter_config.json").read_text())
    assert adapter["text_column_names"] == ["prompt", "history"] and adapter["chat_format"]["max_source_length"] == 40

    predictions = tmp_path / "predictions.jsonl"
    run_command(sys.executable, "-m", "ms_ptuning.predict", "--adapter", str(output / "adapter"), "--input", DEV,
                "--output", str(predictions), "--max_new_tokens", "8", "--backend", "graph", "--disable_tqdm")
    predicted = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [p["line"] for p in predicted] == [1, 2, 3]
    assert [p["generated"] for p in predicted] == [g["predict"] for g in generated]  # encoded as in training
    shorter = load_adapter(str(output / "adapter"), max_length=5, generation={"max_new_tokens": 2}, backend="eager")
    assert shorter.predictor.format.max_source_length == 5  # --max_seq_length: the prompt tokens kept
    first = shorter.predict([{"prompt": "类型#上衣*颜色#白色*风格#休闲"}])[0]["generated"]
    prompt = [tokenizer.cls_token_id, *tokenizer("类型#", add_special_tokens=False)["input_ids"][:3],
              tokenizer.sep_token_id]
    expected = generate(shorter.model, [prompt], GenerationConfig(max_new_tokens=2, eos_token_id=tokenizer.sep_token_id,
                                                                  pad_token_id=tokenizer.pad_token_id))
    assert first == decode_text(tokenizer, expected[0])


def test_two_msrun_workers_tune_a_llama_prefix_like_one_process(script_run, tmp_path):
    """The script's run again as 2 msrun workers with batches of 2 (its command, from DRY_RUN, under
    scripts/run_distributed.sh): the same adapter, losses and evaluation as the one process with batches of 4
    (the 7 usable records make batches of 4 and 3, so worker 1 gets one row of every second batch). The loss
    averages over response tokens, so the workers weigh their shards by labelled tokens, not rows
    (`training.steps.shard_share`)."""
    import shlex

    from safetensors.numpy import load_file
    from test_distributed import free_port

    model_dir, single = script_run
    parallel, logs = tmp_path / "parallel", tmp_path / "logs"
    command = run_command("bash", os.path.join(ROOT, "scripts", "run_chat_ptuning.sh"), str(model_dir), TRAIN, DEV,
                          *SCRIPT_FLAGS, "--per_device_train_batch_size", "2", OUTPUT_DIR=str(parallel), DRY_RUN="1")
    flags = shlex.split(command.stdout)[3:]  # after `python -m ms_ptuning.chat`
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distributed.sh"), "2", *flags],
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=ROOT, ENTRY="ms_ptuning.chat", MASTER_PORT=str(free_port()),
                                     MSRUN_LOG_DIR=str(logs)))
    worker_logs = "".join((logs / name).read_text(errors="replace")[-2000:] for name in sorted(os.listdir(logs)))
    assert result.returncode == 0, result.stderr[-2000:] + worker_logs
    one = load_file(str(single / "adapter" / "adapter.safetensors"))
    two = load_file(str(parallel / "adapter" / "adapter.safetensors"))
    assert set(one) == set(two) and one
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=0, atol=1e-5, err_msg=name)
    records = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (single, parallel)]
    losses = [[r["loss"] for r in run if "loss" in r] for run in records]
    assert len(losses[0]) == 12 and losses[1] == pytest.approx(losses[0], rel=1e-4)
    results = [json.loads((run / "results.json").read_text()) for run in (single, parallel)]
    # the token-level scores of the gathered outputs; eval_loss is HF's row-weighted mean of batch means,
    # whose batches are the workers' shards here (README, "Data parallelism")
    for name in ("eval_token_nll", "eval_perplexity"):
        assert results[1][name] == pytest.approx(results[0][name], rel=1e-5), name
    assert len((parallel / "generated_predictions.jsonl").read_text().splitlines()) == 3  # rank 0 generated
