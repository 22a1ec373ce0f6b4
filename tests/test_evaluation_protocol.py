"""THUDM's evaluation protocol through ms_ptuning.run (test splits scored at every new best dev metric,
reported at the best-dev step; split names checked before training), and evaluation outputs of different
widths concatenated as Hugging Face's Trainer does (-100 padding), with datasets.Dataset and a collator."""

import json
import os

import numpy as np
import pytest

from ms_ptuning import run as run_module
from ms_ptuning.backend import seed_everything
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.models import HEADS
from ms_ptuning.tasks import TASKS
from ms_ptuning.tasks.custom import OWN_DATA_TASKS
from ms_ptuning.training import Trainer
from ms_ptuning.training.inputs import dataset_fingerprint
from tiny_backbones import tiny_config
from tiny_runs import same_process_runs  # noqa: F401  (a fixture)
from tiny_runs import save_tiny_bert, tiny_arguments
import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENTENCES = [[("Anna", "B-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")],
             [("Peter", "B-PER"), ("lives", "O"), ("in", "O"), ("Berlin", "B-LOC"), (".", "O")],
             [("Maria", "B-PER"), ("visited", "O"), ("Berlin", "B-LOC"), (".", "O")],
             [("Peter", "B-PER"), ("visited", "O"), ("Paris", "B-LOC"), (".", "O")]]


def write_conll(path, sentences) -> None:
    with open(path, "w") as handle:
        handle.write("-DOCSTART- -X- -X- O\n\n")
        for sentence in sentences:
            handle.writelines(f"{word} NN O {tag}\n" for word, tag in sentence)
            handle.write("\n")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory):
    """CoNLL-2003-format sentences whose entities a tiny model learns within a few steps: the dev F1 rises
    over several evaluations, then stays (measured: 0.59, 0.82, 0.94, 1.0, 1.0, ...)."""
    directory = tmp_path_factory.mktemp("ner")
    write_conll(directory / "train.txt", SENTENCES * 2)
    write_conll(directory / "valid.txt", SENTENCES)
    write_conll(directory / "test.txt", SENTENCES[1:])
    return str(directory)


def ner_flags(model_dir: str, data_dir: str, output_dir, *extra: str) -> list:
    return ["--task", "conll2003", "--data_dir", data_dir, "--model_name_or_path", model_dir, "--output_dir",
            str(output_dir), "--mode", "prefix", "--pre_seq_len", "4", "--max_seq_length", "32",
            "--per_device_train_batch_size", "4", "--max_steps", "8", "--learning_rate", "5e-2",
            "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "no", "--logging_steps", "1",
            "--hidden_dropout_prob", "0", "--seed", "3", "--disable_tqdm", "true", *extra]


def test_ner_run_reports_test_f1_at_the_best_dev_step(model_dir, ner_dir, same_process_runs, tmp_path):
    results = run_module.run(*run_module.parse(ner_flags(model_dir, ner_dir, tmp_path, "--eval_splits", "test")))
    with open(tmp_path / "results.json") as handle:
        saved = json.load(handle)
    with open(tmp_path / "metrics.jsonl") as handle:
        records = [json.loads(line) for line in handle]
    dev = [(record["step"], record["eval_f1"]) for record in records if "eval_f1" in record]
    tests = {record["step"]: record for record in records if "test_f1" in record}
    assert [step for step, _ in dev] == list(range(1, 9))
    new_bests = [step for i, (step, f1) in enumerate(dev) if all(f1 > earlier for _, earlier in dev[:i])]
    assert sorted(tests) == new_bests  # the test split is scored at each new best dev F1, and only then
    assert 1 < len(new_bests) < len(dev)  # the data makes both cases happen
    best_step = new_bests[-1]
    assert saved["best_eval_f1"] == max(f1 for _, f1 in dev) == dict(dev)[best_step]
    epochs = {record["step"]: record["epoch"] for record in records if "eval_f1" in record}
    assert saved["best_step"] == best_step and saved["best_epoch"] == epochs[best_step]
    assert saved["test_metrics_from"] == "best_validation"
    assert saved["test_f1"] == tests[best_step]["test_f1"] and saved["test_loss"] == tests[best_step]["test_loss"]
    assert results["test_f1"] == saved["test_f1"] and os.path.isfile(tmp_path / "adapter" / "adapter_config.json")


def test_an_unknown_split_stops_before_training_listing_the_splits(model_dir, ner_dir, same_process_runs, tmp_path):
    with pytest.raises(ValueError, match=r"--eval_splits: task 'conll2003' has no split 'test_wsj'; its splits are "
                                         r"train, validation, test$"):
        run_module.run(*run_module.parse(ner_flags(model_dir, ner_dir, tmp_path / "out", "--eval_splits",
                                                   "test,test_wsj")))
    assert not os.path.exists(tmp_path / "out")


def test_the_command_line_reports_bad_input_without_a_traceback(model_dir, ner_dir, same_process_runs, tmp_path,
                                                               capsys):
    flags = ner_flags(model_dir, ner_dir, tmp_path / "out", "--eval_splits", "test_wsj")
    assert run_module.main(flags) == 2
    printed = capsys.readouterr().err
    assert printed.endswith("ms_ptuning.run: error: --eval_splits: task 'conll2003' has no split 'test_wsj'; its "
                            "splits are train, validation, test\n") and "Traceback" not in printed
    assert not os.path.exists(tmp_path / "out")


def test_the_adapter_survives_an_error_after_training(model_dir, ner_dir, same_process_runs, tmp_path, monkeypatch):
    def failing_evaluation(*args, **kwargs):
        raise RuntimeError("the final evaluation failed")

    monkeypatch.setattr(Trainer, "evaluate", failing_evaluation)
    flags = ner_flags(model_dir, ner_dir, tmp_path, "--eval_strategy", "no", "--max_steps", "1")
    with pytest.raises(RuntimeError, match="the final evaluation failed"):
        run_module.run(*run_module.parse(flags))
    assert os.path.isfile(tmp_path / "adapter" / "adapter.safetensors")


def test_every_task_declares_its_splits():
    """Tasks with fixed files declare them; own-data tasks have the splits whose files were given."""
    for name, task_class in TASKS.items():
        if name in OWN_DATA_TASKS:
            assert task_class({"train": "a.csv", "validation": "b.csv"}).splits == ("train", "validation"), name
            continue
        assert {"train", "validation"} <= set(task_class.splits), name
        if hasattr(task_class, "split_files"):
            assert set(task_class.splits) == set(task_class.split_files), name


def tagged_sentences(seed: int = 0, count: int = 10):
    """Token-classification rows of 3 to 9 tokens (ragged), labels -100 on the [CLS] position."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 10, count)
    ids = [np.concatenate([[2], rng.integers(5, 100, length - 1)]).tolist() for length in lengths]
    labels = [[-100] + rng.integers(0, 3, length - 1).tolist() for length in lengths]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": labels, "words": [f"s{i}" for i in range(count)]})


def pad_to_longest(features: list) -> dict:
    """A data collator: pad input_ids with 0 and labels with -100 to the batch's longest row."""
    width = max(len(feature["input_ids"]) for feature in features)
    batch = {"input_ids": np.zeros((len(features), width), np.int64), "labels": np.full((len(features), width), -100),
             "attention_mask": np.zeros((len(features), width), np.int64)}
    for row, feature in enumerate(features):
        size = len(feature["input_ids"])
        batch["input_ids"][row, :size], batch["labels"][row, :size] = feature["input_ids"], feature["labels"]
        batch["attention_mask"][row, :size] = 1
    return batch


def test_batches_of_different_widths_are_concatenated_with_minus_100(tmp_path):
    seed_everything(0)
    model = HEADS["token_classification"](build_backbone(tiny_config("bert")),
                                          PTuningConfig(mode="prefix", pre_seq_len=4, num_labels=3))
    data = tagged_sentences()
    with pytest.raises(ValueError, match=r"columns \['input_ids', 'labels'\] have rows of different lengths"):
        Trainer(model, tiny_arguments(tmp_path), train_dataset=data)
    trainer = Trainer(model, tiny_arguments(tmp_path, per_device_eval_batch_size=4, max_steps=2),
                      data_collator=pad_to_longest, train_dataset=data, eval_dataset=data)
    trainer.train()  # the string column "words" is not among the model's arguments: kept away from it
    output = trainer.predict(data)
    lengths = [len(row) for row in data["input_ids"]]
    widest = max(lengths)
    assert output.predictions.shape == (10, widest, 3) and output.label_ids.shape == (10, widest)
    for row, length in enumerate(lengths):
        batch_width = max(lengths[row // 4 * 4:row // 4 * 4 + 4])
        assert np.array_equal(output.label_ids[row, :length], data["labels"][row])
        assert (output.label_ids[row, length:] == -100).all()
        assert (output.predictions[row, batch_width:] == -100).all()  # padding added between batches
        assert (output.predictions[row, :batch_width] != -100).all()  # the batch's own (padded) positions
    other = datasets.Dataset.from_dict({**data.to_dict(), "input_ids": [row[::-1] for row in data["input_ids"]]})
    fingerprints = [dataset_fingerprint(Trainer(model, tiny_arguments(tmp_path), data_collator=pad_to_longest,
                                                train_dataset=dataset).train_dataset) for dataset in (data, other)]
    assert fingerprints[0] != fingerprints[1]  # ragged columns count in the resume check too


def metric_records(output_dir) -> list:
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def test_ner_batches_of_two_widths_train_on_the_graph_backend_as_on_eager(model_dir, same_process_runs, tmp_path,
                                                                         capsys):
    """Per-batch padding (widths multiples of 32, capped at the longest row): a long sentence makes its batch
    wider than the others' 32; the graph backend compiles one train and one eval graph per width and logs
    eager's losses and F1."""
    long_sentence = [(word, "O") for word in ("the man ran in the park and the man is in the park " * 3).split()]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split, sentences in (("train", SENTENCES + [long_sentence] + SENTENCES[:3]),
                             ("valid", SENTENCES + [long_sentence])):  # eval batches: 4 short, then the long one
        write_conll(data_dir / f"{split}.txt", sentences)
    runs = {}
    for backend in ("graph", "eager"):
        flags = ner_flags(model_dir, str(data_dir), tmp_path / backend, "--max_seq_length", "60", "--max_steps", "2",
                          "--per_device_eval_batch_size", "4", "--backend", backend)
        assert run_module.run(*run_module.parse(flags))["backend"] == backend
        runs[backend] = metric_records(tmp_path / backend)
        compiled = [line for line in capsys.readouterr().out.splitlines() if "compiled the" in line]
        if backend == "graph":
            for kind in ("train", "eval"):
                widths = sorted(int(line.split("input_ids 4×")[1].split(",")[0]) for line in compiled
                                if f"compiled the {kind} step graph" in line)
                assert len(widths) == 2 and widths[0] == 32 < widths[1], (kind, compiled)
    for graph, eager in zip(runs["graph"], runs["eager"], strict=True):
        assert graph.keys() == eager.keys()
        for key in ("loss", "eval_loss", "eval_f1"):
            if key in graph:
                assert graph[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-6), (key, graph, eager)
