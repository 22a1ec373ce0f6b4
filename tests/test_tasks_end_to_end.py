"""Every task family's fixture trains for a few steps through `ms_ptuning.run` (the run scripts' code path)
with a tiny random BERT, and is scored by its task's metric; one run goes through a run script itself."""

import json
import math
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest

from ms_ptuning import run as run_module
from ms_ptuning.backbones import build_backbone
from ms_ptuning.tasks import get_task
from ms_ptuning.tasks.tagging import TaggingTask
from tiny_tokenizer import build_tokenizer
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tasks")
TINY_RUN = ["--mode", "prefix", "--pre_seq_len", "4", "--per_device_train_batch_size", "2", "--max_steps", "2",
            "--learning_rate", "1e-2", "--seed", "11"]
SHORT = ["--max_seq_length", "64"]
REFERENCE_SCRIPTS = [f"run_{name}.sh" for name in (
    "boolq_bert", "boolq_roberta", "rte_bert", "rte_roberta", "copa_bert", "copa_roberta", "wic_bert", "wic_roberta",
    "wsc_bert", "wsc_roberta", "conll03_roberta", "conll04_bert", "conll04_roberta", "ontonotes_bert",
    "ontonotes_roberta", "conll05_roberta", "conll12_roberta", "squad_roberta", "squad_v2_roberta")]
METRICS = {"rte": {"accuracy"}, "conll2003": {"precision", "recall", "f1", "accuracy"},
           "conll2005": {"precision", "recall", "f1", "accuracy"}, "squad": {"exact_match", "f1"}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """config.json + model.safetensors + tokenizer files of a 2-layer, hidden-32 random BERT."""
    directory = str(tmp_path_factory.mktemp("tiny_bert"))
    tokenizer = build_tokenizer(directory)
    tokenizer.save_pretrained(directory)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=37, max_position_embeddings=256)
    build_backbone(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def same_process_runs():
    # run() selects the device first; MindSpore refuses that once kernels ran (building the model above),
    # and the device is the CPU default anyway
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "set_device_target", lambda target: None)
        yield


def check_results(results: dict, task_name: str, output_dir: str) -> None:
    task = get_task(task_name)
    assert {f"eval_{name}" for name in METRICS.get(task_name, {task.metric_for_best_model})} <= set(results)
    assert math.isfinite(results["eval_loss"]) and math.isfinite(results["train_loss"])
    assert results["global_step"] == 2 and 0 < results["trainable_parameters"] < results["total_parameters"]
    with open(os.path.join(output_dir, "results.json")) as handle:
        assert json.load(handle)[f"eval_{task.metric_for_best_model}"] == results[f"eval_{task.metric_for_best_model}"]


# NER/SRL without --max_seq_length: cut only at the model's maximum, padded per batch
@pytest.mark.parametrize("task_name, extra", [("rte", SHORT), ("conll2003", []),
                                              ("conll2005", ["--eval_splits", "test_wsj,test_brown"]),
                                              ("squad", ["--max_seq_length", "192"])])
def test_family_trains_through_run(task_name, extra, model_dir, same_process_runs, tmp_path):
    argv = ["--task", task_name, "--model_name_or_path", model_dir, "--data_dir", os.path.join(FIXTURES, task_name),
            "--output_dir", str(tmp_path)] + TINY_RUN + extra
    results = run_module.run(*run_module.parse(argv))
    check_results(results, task_name, str(tmp_path))
    if task_name == "conll2005":  # CoNLL-2005's two test sets, scored as run_conll05_roberta.sh asks
        assert all(any(split in key and "f1" in key for key in results) for split in ("test_wsj", "test_brown"))


def test_ner_evaluation_over_batches_of_several_widths(model_dir, same_process_runs, tmp_path, monkeypatch):
    """A 40-word dev sentence next to short ones, evaluated one per batch: batches of width 32 and of the
    long row's width, their predictions padded with -100 and scored together."""
    data_dir = shutil.copytree(os.path.join(FIXTURES, "conll2003"), tmp_path / "data")
    with open(data_dir / "valid.txt", "a") as handle:
        handle.write("\n" + "\n".join(["river NN B-NP O"] * 40 + ["Paris NNP B-NP B-LOC"]) + "\n")
    scored = []

    def recording_metrics(task, predictions, dataset):
        scored.append((predictions, dataset))
        return original_metrics(task, predictions, dataset)

    original_metrics = TaggingTask.compute_metrics
    monkeypatch.setattr(TaggingTask, "compute_metrics", recording_metrics)
    argv = ["--task", "conll2003", "--model_name_or_path", model_dir, "--data_dir", str(data_dir), "--output_dir",
            str(tmp_path / "out"), "--per_device_eval_batch_size", "1"] + TINY_RUN
    check_results(run_module.run(*run_module.parse(argv)), "conll2003", str(tmp_path / "out"))
    predictions, dataset = scored[-1]
    lengths = dataset.columns["attention_mask"].sum(axis=1)
    assert predictions.shape[:2] == (len(dataset), dataset.sequence_width) and lengths.max() > 32
    for row, length in enumerate(lengths):
        width = dataset.sequence_width if length > 32 else 32
        assert np.all(predictions[row, width:] == -100) and not np.any(predictions[row, :width] == -100)


def test_run_script_trains_copa(model_dir, tmp_path):
    """scripts/run_copa_bert.sh with the reference's flags, overridden to a tiny run by extra flags."""
    env = dict(os.environ, MODEL_DIR=model_dir, DATA_DIR=os.path.join(FIXTURES, "copa"), OUTPUT_DIR=str(tmp_path))
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_copa_bert.sh"), *TINY_RUN, *SHORT], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results.json") as handle:
        results = json.load(handle)
    check_results(results, "copa", str(tmp_path))
    assert results["task"] == "copa" and results["mode"] == "prefix"


def test_every_run_script_parses_as_run_flags(tmp_path):
    for script in REFERENCE_SCRIPTS:
        printed = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), str(tmp_path), str(tmp_path)],
                                 env=dict(os.environ, DRY_RUN="1"), capture_output=True, text=True, timeout=30)
        assert printed.returncode == 0, printed.stderr
        model_args, data_args, training_args = run_module.parse(shlex.split(printed.stdout)[3:])
        get_task(data_args.task)
        assert model_args.mode == "prefix" and training_args.num_train_epochs >= 10
        if script == "run_wic_bert.sh":
            assert model_args.prefix_projection is True and data_args.template_id == 1
