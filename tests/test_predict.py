"""Own data in, predictions out: a csv and a jsonl (other column names, text pairs) each train a few steps
on the shipped all-MiniLM-L6-v2 through `python -m ms_ptuning.run` (the second through
scripts/run_text_classification.sh), then `ms-ptuning predict` writes one JSON line per input record;
the Python API, every head's predictor, and the documented handling of bad input."""

import ast
import json
import math
import os
import re
import subprocess
import sys

import mindspore
import numpy as np
import pytest
from safetensors.numpy import load_file

from ms_ptuning import (build_model, load_adapter, load_tokenizer, print_trainable_parameters, to_inputs,
                        trainable_parameters)
from ms_ptuning import run as run_module
from ms_ptuning.adapters import save_adapter
from ms_ptuning.backbones import build_backbone, load_backbone
from ms_ptuning.backend import seed_everything
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.nlpcc2017 import decode_summary, load_tokenizer as load_nlpcc_tokenizer
from ms_ptuning.generation import GenerationConfig, generate
from ms_ptuning.data.packaged import minilm_dir
from ms_ptuning.encoders.folding import FoldableEncoder
from ms_ptuning.models import HEADS
from ms_ptuning.cli import main as ms_ptuning_command
from ms_ptuning.predict import predict_file
from ms_ptuning.tasks import TaskDataError
from ms_ptuning.training.optim import AdamW
from ms_ptuning.weights import named_weights
from tiny_runs import same_process_runs  # noqa: F401  (a fixture)
from tiny_runs import save_tiny_bert
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "own_data")
PREDICT = os.path.join(os.path.dirname(sys.executable), "ms-ptuning")
FEW_STEPS = ["--max_seq_length", "32", "--per_device_train_batch_size", "4", "--max_steps", "2",
             "--learning_rate", "1e-2", "--pre_seq_len", "4", "--disable_tqdm", "True", "--seed", "3"]


def predict_main(argv) -> int:
    """`ms-ptuning predict ARGV` in this process (the console script's code path, without its start-up)."""
    return ms_ptuning_command(["predict", *argv])


def read_jsonl(path) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def run(command, **env) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT,
                            env=dict(os.environ, **env))
    return result


@pytest.fixture(scope="module")
def reviews_adapter(tmp_path_factory):
    """A csv with `text,label` columns, prefix mode, through `python -m ms_ptuning.run`."""
    output = tmp_path_factory.mktemp("reviews")
    result = run([sys.executable, "-m", "ms_ptuning.run", "--task", "text_classification", "--model_name_or_path",
                  minilm_dir(), "--train_file", os.path.join(FIXTURES, "reviews_train.csv"), "--validation_file",
                  os.path.join(FIXTURES, "reviews_dev.csv"), "--output_dir", str(output), "--mode", "prefix",
                  *FEW_STEPS])
    assert result.returncode == 0, result.stderr[-3000:]
    return output / "adapter"


@pytest.fixture(scope="module")
def nli_adapter(tmp_path_factory):
    """A jsonl with other column names (a text pair, a 3-way label), prompt mode, through the bash script."""
    output = tmp_path_factory.mktemp("nli")
    result = run(["bash", os.path.join(ROOT, "scripts", "run_text_classification.sh"), minilm_dir(),
                  os.path.join(FIXTURES, "nli_train.jsonl"), os.path.join(FIXTURES, "nli_dev.jsonl"),
                  "--text_column_names", "premise,claim", "--label_column_name", "verdict", "--mode", "prompt",
                  "--prompt_encoder_type", "mlp", *FEW_STEPS], OUTPUT_DIR=str(output))
    assert result.returncode == 0, result.stderr[-3000:]
    return output / "adapter"


def assert_same_predictions(graph: list, eager: list, atol: float = 1e-5) -> None:
    """Predictions of the graph backend (compiled, batches padded to fixed shapes) and of the eager one:
    the same labels, tags and answers, numbers within `atol`."""
    assert len(graph) == len(eager)
    for compiled, op_by_op in zip(graph, eager):
        assert compiled.keys() == op_by_op.keys()
        for key, value in compiled.items():
            if isinstance(value, dict):
                assert value.keys() == op_by_op[key].keys() and \
                    np.allclose(list(value.values()), list(op_by_op[key].values()), rtol=0, atol=atol), key
            elif isinstance(value, float):
                assert abs(value - op_by_op[key]) <= atol, key
            else:
                assert value == op_by_op[key], key


def check_classified(record: dict, labels: tuple) -> None:
    assert record["label"] in labels and set(record["probabilities"]) == set(labels)
    assert math.isclose(sum(record["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert record["probabilities"][record["label"]] == max(record["probabilities"].values())


def test_csv_run_saves_its_labels_and_columns(reviews_adapter):
    with open(reviews_adapter / "adapter_config.json") as handle:
        saved = json.load(handle)
    assert saved["labels"] == ["neg", "pos"] and saved["text_column_names"] == ["text"]
    assert saved["task"] == "text_classification" and saved["max_seq_length"] == 32
    assert saved["base_model"] == minilm_dir() and saved["ptuning_config"]["mode"] == "prefix"
    results = json.loads((reviews_adapter.parent / "results.json").read_text())
    assert results["global_step"] == 2 and {"eval_accuracy", "eval_f1", "eval_loss"} <= set(results)


def test_predict_writes_a_line_per_record_and_reports_corrupt_ones(reviews_adapter, tmp_path):
    output = tmp_path / "predictions.jsonl"
    result = run([PREDICT, "predict", "--adapter", str(reviews_adapter), "--input",
                  os.path.join(FIXTURES, "reviews_new.jsonl"), "--output", str(output), "--batch_size", "2"])
    assert result.returncode == 1, result.stderr[-3000:]  # documented: some records could not be read
    assert f"{os.path.join(FIXTURES, 'reviews_new.jsonl')}:3: invalid JSON" in result.stderr
    assert "predicted 3 of 5 records" in result.stdout and "Traceback" not in result.stderr
    records = read_jsonl(output)
    assert [record["line"] for record in records] == [1, 2, 3, 4, 5]
    assert "invalid JSON" in records[2]["error"] and records[3]["error"].endswith("field 'text': empty text")
    for record in (records[0], records[1], records[4]):
        check_classified(record, ("neg", "pos"))
    assert not os.path.exists(f"{output}.partial")


def test_api_predicts_what_the_command_wrote(reviews_adapter, tmp_path):
    output = tmp_path / "predictions.jsonl"
    inputs = tmp_path / "new.csv"
    inputs.write_text('text\n"A gripping, funny film."\nDull and slow.\n')
    assert predict_main(["--adapter", str(reviews_adapter), "--input", str(inputs), "--output", str(output),
                         "--disable_tqdm"]) == 0
    model = load_adapter(str(reviews_adapter))
    assert model.backend.name == "graph" and type(model.model.backbone).__name__ == "NativeBert"  # the default
    predicted = model.predict(["A gripping, funny film.", "Dull and slow."])
    eager = load_adapter(str(reviews_adapter), backend="eager")
    assert eager.backend.name == "eager"
    assert_same_predictions(predicted, eager.predict(["A gripping, funny film.", "Dull and slow."]))
    for written, direct in zip(read_jsonl(output), predicted, strict=True):
        assert written["label"] == direct["label"]
        assert np.allclose(list(written["probabilities"].values()), list(direct["probabilities"].values()), atol=1e-6)
    assert model.labels == ("neg", "pos") and model.columns == ("text",)
    renamed = load_adapter(str(reviews_adapter), text_column_names="review")  # a file whose column has another name
    assert renamed.columns == ("review",)
    assert renamed.predict([{"review": "Dull and slow."}])[0]["label"] == predicted[1]["label"]


def test_pair_adapter_reads_its_saved_columns_from_csv(nli_adapter, tmp_path, capsys):
    inputs = tmp_path / "pairs.csv"
    inputs.write_text("id,premise,claim\n1,A dog runs.,An animal moves.\n2,A dog runs.,\n3,A cat sleeps.,It rests.\n")
    output = tmp_path / "out.jsonl"
    assert predict_main(["--adapter", str(nli_adapter), "--input", str(inputs), "--output", str(output)]) == 0
    assert "predicted 3 of 3 records" in capsys.readouterr().out  # one empty side of a pair is kept, as in training
    records = read_jsonl(output)
    assert [record["line"] for record in records] == [2, 3, 4]
    for record in records:
        check_classified(record, ("contradiction", "entailment", "neutral"))
    missing = tmp_path / "missing.csv"
    missing.write_text("premise,hypothesis\na,b\n")
    assert predict_main(["--adapter", str(nli_adapter), "--input", str(missing), "--output",
                         str(tmp_path / "never.jsonl")]) == 2
    backend_line, error_line = capsys.readouterr().err.splitlines()  # the model loaded, then the input was refused
    assert backend_line.startswith("[ms_ptuning] backend: graph (bert has a native backbone")
    assert error_line == f"ms-ptuning predict: error: {missing}:1: missing column 'claim'; the header has 'premise', " \
                         "'hypothesis'"
    assert not os.path.exists(tmp_path / "never.jsonl")


def test_predict_never_overwrites_without_the_flag(reviews_adapter, tmp_path, capsys):
    output = tmp_path / "kept.jsonl"
    output.write_text("precious\n")
    argv = ["--adapter", str(reviews_adapter), "--input", os.path.join(FIXTURES, "reviews_dev.csv"), "--output",
            str(output), "--disable_tqdm"]
    assert predict_main(argv) == 2
    assert capsys.readouterr().err == f"ms-ptuning predict: error: {output} exists; pass --overwrite to replace it\n"
    assert output.read_text() == "precious\n"
    assert predict_main(argv + ["--overwrite"]) == 0
    assert [record["line"] for record in read_jsonl(output)] == [2, 3, 4, 5]


class CountingPredictor:
    """Stands in for a model: records how much of the output was on disk at each batch."""

    columns, formats = ("text",), ("jsonl",)

    def __init__(self, partial):
        self.partial, self.on_disk, self.batch_sizes = partial, [], []

    def example(self, where, record):
        if "text" not in record:
            raise where.error("missing", field="text")
        return record["text"]

    def predict(self, examples):
        with open(self.partial) as handle:
            self.on_disk.append(len(handle.readlines()))
        self.batch_sizes.append(len(examples))
        return [{"length": len(text)} for text in examples]


class CountingModel:
    def __init__(self, partial):
        self.predictor = CountingPredictor(partial)


def test_predict_streams_batches_to_disk_in_input_order(tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"text": "x" * n}) + "\n" for n in range(1, 8)).replace('{"text": "xxx"}',
                                                                                                 '{"txt": 1}'))
    output = tmp_path / "new_directory" / "out.jsonl"  # made as needed
    model = CountingModel(f"{output}.partial")
    report = predict_file(model, str(inputs), str(output), batch_size=2, progress=False)
    assert model.predictor.on_disk == [0, 2, 4, 6]  # each batch written before the next is predicted
    assert model.predictor.batch_sizes == [2, 1, 2, 1]  # line 3's error takes its slot, never a prediction
    records = read_jsonl(output)
    assert [r.get("length") for r in records] == [1, 2, None, 4, 5, 6, 7]
    assert records[2] == {"line": 3, "error": f"{inputs}:3: field 'text': missing"}
    assert report.predicted == 6 and len(report.errors) == 1


def test_csv_and_saved_dataset_inputs_keep_their_places(tmp_path):
    import datasets

    inputs = tmp_path / "in.csv"
    inputs.write_text('text,extra\n"multi\nline",1\nshort\nfine,2\n')
    model = CountingModel(str(tmp_path / "a.jsonl.partial"))
    model.predictor.formats = ("csv", "saved")
    predict_file(model, str(inputs), str(tmp_path / "a.jsonl"), progress=False)
    assert read_jsonl(tmp_path / "a.jsonl") == [
        {"line": 2, "length": 10},
        {"line": 4, "error": f"{inputs}:4: expected 2 comma-separated fields (text, extra), got 1"},
        {"line": 5, "length": 4}]
    saved = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["ab", "abc"]})})
    saved.save_to_disk(str(tmp_path / "d"))
    model = CountingModel(str(tmp_path / "b.jsonl.partial"))
    model.predictor.formats = ("csv", "saved")
    predict_file(model, str(tmp_path / "d"), str(tmp_path / "b.jsonl"), progress=False)
    assert read_jsonl(tmp_path / "b.jsonl") == [{"row": 0, "length": 2}, {"row": 1, "length": 3}]


def test_unknown_input_format_stops_before_writing(tmp_path):
    model = CountingModel(str(tmp_path / "out.jsonl.partial"))
    (tmp_path / "in.xlsx").write_text("x")
    with pytest.raises(TaskDataError, match=r"in\.xlsx: unknown data format '\.xlsx'; expected \.jsonl"):
        predict_file(model, str(tmp_path / "in.xlsx"), str(tmp_path / "out.jsonl"), progress=False)
    assert os.listdir(tmp_path) == ["in.xlsx"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")), max_position_embeddings=256)


def own_run(tiny_bert, output, train, validation, *flags):
    argv = ["--task", "text_classification", "--model_name_or_path", tiny_bert, "--train_file", str(train),
            "--validation_file", str(validation), "--output_dir", str(output), *FEW_STEPS, *flags]
    return run_module.run(*run_module.parse(argv))


def test_finetune_multi_label_needs_no_base_model_to_predict(tiny_bert, same_process_runs, tmp_path):
    rows = [("the man ran", ["sport"]), ("a book in the library", ["culture"]),
            ("the boy read and ran", ["culture", "sport"]), ("the river", [])] * 2
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps({"text": text, "topics": topics}) + "\n" for text, topics in rows))
    results = own_run(tiny_bert, tmp_path / "run", data, data, "--mode", "finetune", "--label_column_name", "topics")
    assert {"eval_exact_match", "eval_f1_micro"} <= set(results)
    saved = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert saved["ptuning_config"]["problem_type"] == "multi_label_classification"
    model = load_adapter(str(tmp_path / "run" / "adapter"), model_name_or_path=tiny_bert)
    finetuned = model.predict(["the man ran"])[0]
    assert set(finetuned["probabilities"]) == {"culture", "sport"} and set(finetuned["labels"]) <= {"culture", "sport"}
    assert all(0 < p < 1 for p in finetuned["probabilities"].values())
    assert finetuned["labels"] == [label for label, p in finetuned["probabilities"].items() if p > 0.5]
    eager = load_adapter(str(tmp_path / "run" / "adapter"), model_name_or_path=tiny_bert, backend="eager")
    assert_same_predictions([finetuned], eager.predict(["the man ran"]))


@pytest.mark.parametrize("mode_flags", [("--mode", "prompt", "--prompt_encoder_type", "mlp"), ("--mode", "prefix")])
def test_adapters_move_between_backends(tiny_bert, same_process_runs, tmp_path, mode_flags):
    """An adapter trained on either backend holds the same parameter names and loads on both, which then
    predict the same (eager-trained adapters on the compiled forward, graph-trained ones op by op)."""
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\nthe man ran,yes\na book in the library,no\nthe boy ran,yes\nthe river,no\n")
    texts = ["the man ran in the park", "a book"]
    names = {}
    for trained_on in ("eager", "graph"):
        results = own_run(tiny_bert, tmp_path / trained_on, data, data, *mode_flags, "--backend", trained_on)
        assert results["backend"] == trained_on
        adapter = str(tmp_path / trained_on / "adapter")
        names[trained_on] = sorted(load_file(os.path.join(adapter, "adapter.safetensors")))
        on_graph, on_eager = load_adapter(adapter, backend="graph"), load_adapter(adapter, backend="eager")
        assert type(on_graph.model.backbone).__name__ == "NativeBert" and on_eager.backend.name == "eager"
        assert_same_predictions(on_graph.predict(texts), on_eager.predict(texts))
    assert names["eager"] == names["graph"] and names["graph"]


def test_regression_predicts_a_score(tiny_bert, same_process_runs, tmp_path):
    data = tmp_path / "scores.csv"
    data.write_text("text,rating\nthe man ran,0.5\nthe book,2.5\nthe river,1.25\n")
    results = own_run(tiny_bert, tmp_path / "run", data, data, "--label_column_name", "rating",
                      "--test_file", str(data), "--eval_splits", "test")
    assert {"eval_mse", "eval_pearson", "test_mse"} <= set(results)  # --test_file is the split named test
    [predicted] = load_adapter(str(tmp_path / "run" / "adapter")).predict(["the park"])
    assert set(predicted) == {"score"} and math.isfinite(predicted["score"])
    assert_same_predictions([predicted], load_adapter(str(tmp_path / "run" / "adapter"), backend="eager").predict(
        ["the park"]))


def test_token_classification_tags_every_token(tiny_bert, same_process_runs, tmp_path):
    argv = ["--task", "token_classification", "--model_name_or_path", tiny_bert, "--train_file",
            os.path.join(FIXTURES, "ner_train.jsonl"), "--validation_file", os.path.join(FIXTURES, "ner_dev.conll"),
            "--text_column_names", "words", "--label_column_name", "ner", "--output_dir", str(tmp_path / "run"),
            *FEW_STEPS]
    results = run_module.run(*run_module.parse(argv))
    assert {"eval_f1", "eval_precision", "eval_recall"} <= set(results)
    adapter = str(tmp_path / "run" / "adapter")
    report = predict_file(load_adapter(adapter), os.path.join(FIXTURES, "ner_new.conll"), str(tmp_path / "out.jsonl"),
                          progress=False)
    records = read_jsonl(tmp_path / "out.jsonl")
    assert report.predicted == 2 and [r["line"] for r in records] == [1, 7]
    labels = {"B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER", "O"}
    assert records[0]["tokens"] == ["Franz", "Fischler", "visited", "Brussels", "."]
    assert all(len(r["tags"]) == len(r["tokens"]) and set(r["tags"]) <= labels for r in records)
    eager = load_adapter(adapter, backend="eager")
    predict_file(eager, os.path.join(FIXTURES, "ner_new.conll"), str(tmp_path / "eager.jsonl"), progress=False)
    assert read_jsonl(tmp_path / "eager.jsonl") == records  # batches padded to a width of 32 on graph
    short = load_adapter(adapter, max_length=6)  # [CLS] + 4 sub-tokens + [SEP]: the tail is cut off
    [cut] = short.predict([["the", "man", "is", "in", "the", "park"]])
    assert cut["tags"][:4] == load_adapter(adapter).predict([["the", "man", "is", "in", "the", "park"]])[0]["tags"][:4]
    assert cut["tags"][4:] == [None, None]


def test_question_answering_answers_from_the_context(tiny_bert, tmp_path):
    seed_everything(0)
    model = HEADS["question_answering"](load_backbone(tiny_bert), PTuningConfig(mode="prefix", pre_seq_len=4))
    save_adapter(model, str(tmp_path), task="squad", labels=["start", "end"], base_model=tiny_bert, max_seq_length=160)
    context = "the man ran to the park and the woman ran to the school " * 4
    loaded = load_adapter(str(tmp_path))
    encoders = [cell for _, cell in loaded.model.cells_and_names() if isinstance(cell, FoldableEncoder)]
    assert encoders and all(encoder.folded is not None for encoder in encoders)  # computed once, reused
    [answer] = loaded.predict([{"question": "where did the man run", "context": context}])
    assert answer["answer"] == context[answer["start"]:answer["end"]] and answer["answer"]
    assert math.isfinite(answer["score"])
    eager = load_adapter(str(tmp_path), backend="eager")
    assert_same_predictions([answer], eager.predict([{"question": "where did the man run", "context": context}]))
    with pytest.raises(ValueError, match=r"max_length 300 \+ 4 virtual tokens exceed the 256 positions the model "
                                         r"embeds; pass 252 or less"):
        load_adapter(str(tmp_path), max_length=300)


def test_causal_lm_generates_with_the_generation_flags(tmp_path):
    tokenizer = load_nlpcc_tokenizer()
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                                     pad_token_id=tokenizer.pad_token_id)
    seed_everything(0)
    save_adapter(HEADS["causal_lm"](build_backbone(config), PTuningConfig(mode="finetune")), str(tmp_path),
                 base_model=None, tokenizer=None, max_length=40)
    model = load_adapter(str(tmp_path), generation={"max_new_tokens": 4, "num_beams": 2, "no_repeat_ngram_size": 1})
    generation = model.predictor.generation
    assert (generation.max_new_tokens, generation.num_beams, generation.no_repeat_ngram_size) == (4, 2, 1)
    assert generation.eos_token_id == tokenizer.sep_token_id
    outputs = model.predict(["今天天气很好。", {"article": "新闻<Paragraph>正文"}])
    # as the summarization model was trained: [CLS] article [SEP], NLPCC's paragraph markers dropped
    prompts = [[tokenizer.cls_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.sep_token_id]
               for text in ("今天天气很好。", "新闻正文")]
    expected = generate(model.model, prompts, GenerationConfig(max_new_tokens=4, num_beams=2, no_repeat_ngram_size=1,
                                                               eos_token_id=tokenizer.sep_token_id, pad_token_id=0))
    assert all(len(ids) <= 4 for ids in expected)
    assert outputs == [{"generated": decode_summary(tokenizer, ids)} for ids in expected]
    assert model.backend.name == "graph"  # auto: GPT-2 generates on the compiled fixed-size cache
    eager = load_adapter(str(tmp_path), backend="eager", generation={"max_new_tokens": 4, "num_beams": 2,
                                                                     "no_repeat_ngram_size": 1})
    assert eager.backend.name == "eager"
    assert eager.predict(["今天天气很好。", {"article": "新闻<Paragraph>正文"}]) == outputs


def test_adapter_on_another_model_is_refused(tiny_bert, tmp_path):
    seed_everything(0)
    model = HEADS["sequence_classification"](load_backbone(tiny_bert), PTuningConfig(mode="prefix", pre_seq_len=4))
    save_adapter(model, str(tmp_path / "adapter"), labels=["a", "b"], base_model=minilm_dir())
    with pytest.raises(ValueError, match=r"was trained on another model than .*hidden_size 32 → 384"):
        load_adapter(str(tmp_path / "adapter"))


def test_print_trainable_parameters_as_peft(tiny_bert, capsys):
    seed_everything(0)
    model = HEADS["sequence_classification"](load_backbone(tiny_bert), PTuningConfig(mode="prefix", pre_seq_len=4))
    print_trainable_parameters(model)
    # prefix 4 × (2 layers × 2 × 32) + classifier 32 × 2 + 2; all = that + the tiny BERT
    trainable = 4 * 2 * 2 * 32 + 32 * 2 + 2
    printed = capsys.readouterr().out
    assert printed.startswith(f"trainable params: {trainable:,d} || all params: ")
    total = int(printed.split("all params: ")[1].split(" ||")[0].replace(",", ""))
    assert printed.strip().endswith(f"trainable%: {100 * trainable / total:.4f}")


def test_import_ms_ptuning_does_not_load_mindnlp():
    code = ("import sys, ms_ptuning, ms_ptuning.reference; assert 'mindnlp' not in sys.modules; "
            "assert 'load_adapter' in dir(ms_ptuning); print('light')")
    result = run([sys.executable, "-c", code])
    assert result.returncode == 0 and result.stdout.strip() == "light", result.stderr[-2000:]


def test_text_classification_script_builds_the_run_command(tmp_path):
    train = tmp_path / "mine.csv"
    train.write_text("text,label\na,b\n")
    result = run(["bash", os.path.join(ROOT, "scripts", "run_text_classification.sh"), str(tmp_path), str(train),
                  str(train), "--mode", "finetune"], DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    argv = result.stdout.split()
    assert argv[1:5] == ["-m", "ms_ptuning.run", "--task", "text_classification"]
    assert argv[argv.index("--output_dir") + 1] == os.path.join(ROOT, "outputs", "mine")
    assert argv[-2:] == ["--mode", "finetune"] and argv[argv.index("--train_file") + 1] == str(train)
    missing = run(["bash", os.path.join(ROOT, "scripts", "run_text_classification.sh"), str(tmp_path)])
    assert missing.returncode == 2
    assert "usage: scripts/run_text_classification.sh MODEL_DIR TRAIN_FILE" in missing.stderr


def test_build_model_trains_in_your_own_loop():
    """The API's pieces as README's own loop uses them, on the shipped model (a random tiny BERT's pooled
    outputs hardly differ between inputs): the loss falls, the frozen backbone stays as it was."""
    seed_everything(0)
    model = build_model(minilm_dir(), mode="prompt", pre_seq_len=4, num_labels=2, prompt_encoder_type="mlp")
    frozen = {name: weight.asnumpy().copy() for name, weight in named_weights(model).items()
              if not weight.requires_grad}
    params = trainable_parameters(model)
    assert frozen and set(params).isdisjoint(frozen) and "encoder.prompt_encoder.embedding.weight" in params
    tokenizer = load_tokenizer(minilm_dir())
    batch = to_inputs(tokenizer(["a gripping, funny film", "two dull hours"], padding=True), labels=[1, 0])
    optimizer = AdamW(params, lr=1e-2)
    loss_and_grads = mindspore.value_and_grad(lambda **inputs: model(**inputs)[0], None, list(params.values()))
    model.set_train(False)  # no dropout: the same batch must get easier at every step
    losses = []
    for _ in range(5):
        loss, grads = loss_and_grads(**batch)
        optimizer.step(dict(zip(params, grads)), lr=1e-2)
        losses.append(float(loss.asnumpy()))
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert all(np.array_equal(named_weights(model)[name].asnumpy(), value) for name, value in frozen.items())


def python_blocks(section: str) -> list:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read().split(f"\n## {section}\n")[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_api_runs_as_printed(reviews_adapter, tmp_path):
    (tmp_path / "outputs" / "reviews").mkdir(parents=True)
    os.symlink(reviews_adapter, tmp_path / "outputs" / "reviews" / "adapter")
    result = subprocess.run([sys.executable, "-c", "\n".join(python_blocks("Python API"))], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    predictions = ast.literal_eval(lines[0])
    assert len(predictions) == 2 and all(p["label"] in ("neg", "pos") for p in predictions)
    assert lines[1].startswith("trainable params: ")  # the loaded adapter's
    assert lines[2] == "trainable params: 74,498 || all params: 22,787,714 || trainable%: 0.3269"  # as README shows
    assert [line.split(":")[0] for line in lines[3:]] == ["step 0", "step 1", "step 2"]
    assert all(math.isfinite(float(line.split("loss ")[1])) for line in lines[3:])
