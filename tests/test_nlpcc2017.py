"""NLPCC2017 loading, tokenization and the summarization driver end to end on the shipped fixtures."""

import json
import os
import shlex
import subprocess

import numpy as np
import pytest

from ms_ptuning.data.nlpcc2017 import (DataFormatError, LoadReport, decode_summary, encode_pair, generation_prompts,
                                       iter_records, lm_dataset, load_tokenizer, read_records, resolve_data_file,
                                       split_examples, tokenize_records)
from ms_ptuning import summarization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SMALL = os.path.join(FIXTURES, "nlpcc2017_small.jsonl")
BROKEN = os.path.join(FIXTURES, "nlpcc2017_broken.jsonl")
BROKEN_LINES = [2, 4, 7, 8, 9, 11]  # bad JSON, no summary, blank article, a list, a number, only <Paragraph>


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def examples(tokenizer):
    return tokenize_records(iter_records(SMALL), tokenizer, max_length=512)


def test_malformed_lines_are_counted_exactly():
    report = LoadReport(BROKEN)
    records = list(iter_records(BROKEN, report))
    assert [record.line for record in records] == [1, 3, 6, 10, 12]  # line 5 is blank: ignored, not counted
    assert (report.kept, report.skipped) == (5, 6)
    assert [line for line, _ in report.skipped_lines] == BROKEN_LINES
    reasons = dict(report.skipped_lines)
    assert "invalid JSON" in reasons[2] and "'summarization' is missing" in reasons[4]
    assert "'article' is empty" in reasons[7] and "JSON object" in reasons[8]
    assert "'article' is not a string" in reasons[9] and "'summarization' is empty" in reasons[11]
    assert "skipped 6 malformed lines (first: line 2: invalid JSON" in str(report)


def test_strict_mode_stops_at_file_and_line():
    with pytest.raises(DataFormatError, match=rf"^{BROKEN}:2: invalid JSON"):
        list(iter_records(BROKEN, strict=True))


def test_records_stream_with_paragraph_markers_removed_and_max_samples():
    records = list(iter_records(SMALL, max_samples=3))
    assert [record.line for record in records] == [1, 2, 3]
    assert "<Paragraph>" not in records[0].article and records[0].article.startswith("北京市气象台")
    assert read_records(SMALL, [2, 36])[36].summary == "景德镇陶瓷博览会开幕，展出三十多国作品。"


def test_missing_file_and_offline_download_say_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_data_file(str(tmp_path / "missing.txt"))
    with pytest.raises(ConnectionError, match="pass its local path"):
        resolve_data_file(None, url="http://127.0.0.1:9/train_with_summ.txt", download_dir=str(tmp_path))


def test_default_tokenizer_is_bert_base_chinese(tokenizer):
    assert len(tokenizer) == 21128
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == \
        (0, 100, 101, 102)
    ids = tokenizer("北京iphone 7", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["北", "京", "iphone", "7"]
    assert decode_summary(tokenizer, [101, *ids, 102, 0]) == "北京iphone 7"
    # case kept, as bert-base-chinese's own configuration (do_lower_case=False): its vocabulary has no
    # capitalised Latin words, so "iPhone" and "NBA" are unknown, as in the tutorial
    cased = tokenizer("北京iPhone 7 NBA", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(cased) == ["北", "京", "[UNK]", "7", "[UNK]"]
    assert decode_summary(tokenizer, cased) == "北京\ufffd7\ufffd"


def test_split_is_unshuffled_ninety_ten(examples):
    train, evaluation = split_examples(examples, 0.9)
    assert (len(train), len(evaluation)) == (32, 4)
    assert [e.line for e in train + evaluation] == list(range(1, 37))
    with pytest.raises(ValueError, match="non-empty"):
        split_examples(examples[:1], 0.9)


def test_pair_layout_and_article_first_truncation():
    ids, start = encode_pair([11, 12, 13, 14], [21, 22], max_length=8, cls_id=1, sep_id=2)
    assert ids == [1, 11, 12, 13, 2, 21, 22, 2] and start == 5  # article cut from 4 to 3 tokens
    ids, start = encode_pair([11, 12], list(range(30, 40)), max_length=8, cls_id=1, sep_id=2)
    assert ids == [1, 11, 2, 30, 31, 32, 33, 2] and start == 3  # summary cut only to keep one article token


def test_labels_ignore_padding_and_optionally_the_article(examples, tokenizer):
    full = lm_dataset(examples[:4], tokenizer, max_length=40)
    ids, mask, labels = (full.columns[k] for k in ("input_ids", "attention_mask", "labels"))
    assert ids.shape == (4, 40) and (ids[:, 0] == 101).all()
    assert (labels == np.where(mask == 1, ids, -100)).all()
    summary_only = lm_dataset(examples[:4], tokenizer, max_length=40, summary_only_loss=True).columns["labels"]
    for row in range(4):
        first_sep = int(np.flatnonzero(ids[row] == 102)[0])
        assert (summary_only[row, :first_sep + 1] == -100).all()
        assert (summary_only[row, first_sep + 1:] == labels[row, first_sep + 1:]).all()
        assert summary_only[row, mask[row].sum() - 1] == 102  # the closing [SEP] is learned


def test_generation_prompts_end_with_sep(examples, tokenizer):
    prompts = generation_prompts(examples[:2], tokenizer, max_prompt_length=10)
    assert all(len(p) == 10 and p[0] == 101 and p[-1] == 102 for p in prompts)
    assert prompts[0][1:-1] == examples[0].article_ids[:8].tolist()


# ---- the driver end to end ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_tokenizer_dir(tmp_path_factory, tokenizer):
    """bert-base-chinese restricted to the fixture's tokens (683 instead of 21128): a tiny LM head keeps
    this test fast; the default vocabulary is checked above."""
    from transformers import BertTokenizerFast

    tokens = sorted({token for record in iter_records(SMALL) for text in (record.article, record.summary)
                     for token in tokenizer.tokenize(text)})
    directory = tmp_path_factory.mktemp("tokenizer")
    with open(directory / "vocab.txt", "w", encoding="utf-8") as handle:
        handle.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tokens]) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(str(directory))
    return str(directory)


DECODING = ["--max_new_tokens", "12", "--num_beams", "2", "--no_repeat_ngram_size", "2", "--disable_tqdm", "True",
            "--save_strategy", "no", "--eval_strategy", "no", "--seed", "0"]
TINY_MODEL = ["--n_layer", "2", "--n_embd", "64", "--n_head", "4", "--n_positions", "80", "--max_length", "64",
              "--dropout", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_tokenizer_dir):
    output_dir = str(tmp_path_factory.mktemp("run"))
    results = summarization.run(*summarization.parse(
        ["--train_file", SMALL, "--tokenizer_name", small_tokenizer_dir, "--output_dir", output_dir, *TINY_MODEL,
         *DECODING, "--summary_only_loss", "True", "--num_train_epochs", "6", "--per_device_train_batch_size", "8",
         "--learning_rate", "1e-2", "--warmup_steps", "2", "--logging_steps", "1", "--rouge_before_training", "True"]))
    return output_dir, results


def test_training_lowers_the_loss_and_writes_results(trained):
    output_dir, results = trained
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        losses = [record["loss"] for record in map(json.loads, handle) if "loss" in record]
    assert len(losses) == 24 and np.mean(losses[-4:]) < np.mean(losses[:4]) - 1.0
    assert (results["train_examples"], results["eval_examples"], results["skipped_lines"]) == (32, 4, 0)
    assert results["backend"] == "graph"  # --backend auto: GPT-2 trains and generates on the graph backend
    assert np.isclose(results["eval_perplexity"], np.exp(results["eval_token_nll"]))
    with open(os.path.join(output_dir, "results.json")) as handle:
        saved = json.load(handle)
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert 0.0 <= saved[key] <= 1.0 and 0.0 <= saved["before_training"][key] <= 1.0
    assert saved["rouge-1"] > saved["before_training"]["rouge-1"]


def test_generation_returns_text_with_articles_in_the_samples(trained):
    output_dir, _ = trained
    with open(os.path.join(output_dir, "samples.jsonl"), encoding="utf-8") as handle:
        samples = [json.loads(line) for line in handle]
    assert [s["line"] for s in samples] == [33, 34, 35, 36]
    assert samples[0]["article"].startswith("厦门马拉松赛今天鸣枪开跑")
    assert all(s["generated"] and "[" not in s["generated"] and " " not in s["generated"] for s in samples)


def test_fp16_trains_and_generates_on_the_graph_backend(small_tokenizer_dir, tmp_path):
    """--mixed_precision fp16 on the native GPT-2: MatMuls in float16 through the compiled steps, loss
    scaling, generation on the static cache in float16."""
    results = summarization.run(*summarization.parse(
        ["--train_file", SMALL, "--tokenizer_name", small_tokenizer_dir, "--output_dir", str(tmp_path), *TINY_MODEL,
         *DECODING, "--max_steps", "3", "--per_device_train_batch_size", "8", "--mixed_precision", "fp16"]))
    assert results["backend"] == "graph" and results["global_step"] == 3 and np.isfinite(results["eval_loss"])
    with open(tmp_path / "samples.jsonl", encoding="utf-8") as handle:
        assert all(json.loads(line)["generated"] for line in handle)


@pytest.mark.parametrize("backend", ["graph", "eager"])
def test_generate_only_from_the_saved_adapter_reproduces_the_summaries(trained, tmp_path, backend):
    """Tokenizer, max_length, loss masking and model config all come from the adapter directory; the adapter
    trained on the graph backend loads on either backend and gives the same summaries."""
    output_dir, results = trained
    again = summarization.run(*summarization.parse(
        ["--train_file", SMALL, "--output_dir", str(tmp_path), *DECODING,
         "--adapter_dir", os.path.join(output_dir, "adapter"), "--backend", backend]))
    assert "global_step" not in again and again["max_length"] == 64 and again["backend"] == backend
    with open(os.path.join(output_dir, "samples.jsonl")) as first, open(tmp_path / "samples.jsonl") as second:
        assert [json.loads(line)["generated"] for line in first] == [json.loads(line)["generated"] for line in second]
    assert again["eval_loss"] == pytest.approx(results["eval_loss"], abs=1e-5)


# ---- the shell entry points ----------------------------------------------------------------------

def dry_run(script: str, *args):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], capture_output=True, text=True,
                          env=dict(os.environ, DRY_RUN="1"), timeout=30)


def test_run_script_passes_the_tutorial_hyperparameters_and_later_flags_win():
    result = dry_run("run_nlpcc2017_gpt2.sh", SMALL, "--mode", "prefix")
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:3] == [os.path.join(ROOT, ".venv", "bin", "python"), "-m", "ms_ptuning.summarization"]
    model_args, data_args, gen_args, training_args = summarization.parse(argv[3:])
    assert (model_args.mode, data_args.train_file, data_args.max_length) == ("prefix", SMALL, 1024)
    assert (training_args.learning_rate, training_args.warmup_steps, training_args.max_grad_norm) == (1.5e-4, 2000, 1.0)
    assert training_args.per_device_train_batch_size == 4
    assert (gen_args.num_beams, gen_args.no_repeat_ngram_size, gen_args.max_new_tokens) == (5, 2, 50)
    assert model_args.backend == "auto"
    argv = shlex.split(dry_run("run_nlpcc2017_gpt2.sh", SMALL, "--backend", "eager").stdout)
    assert summarization.parse(argv[3:])[0].backend == "eager"


def test_generate_script_needs_an_adapter_and_a_data_file(tmp_path):
    assert "no adapter_config.json" in dry_run("generate_summaries.sh", str(tmp_path)).stderr
    (tmp_path / "adapter_config.json").write_text("{}")
    assert "TRAIN_FILE is not set" in dry_run("generate_summaries.sh", str(tmp_path)).stderr
    result = dry_run("generate_summaries.sh", str(tmp_path), SMALL, "--num_beams", "1", "--backend", "eager")
    argv = shlex.split(result.stdout)
    model_args, data_args, gen_args, training_args = summarization.parse(argv[3:])
    assert (data_args.train_file, gen_args.num_beams, model_args.backend) == (SMALL, 1, "eager")
    assert training_args.output_dir == os.path.join(os.path.dirname(str(tmp_path)), "generated")
