"""Whole-run comparison with the PyTorch reference (`ms_ptuning.comparison`), mechanics only, on fixture tasks
with a tiny random BERT and dropout 0: a sequence pair (MRPC), NER with its test split (CoNLL-2003), QA (SQuAD)
and multiple choice (COPA) in prefix, prompt and finetune mode. Each task's ms_ptuning side runs here (as
`ms_side`), the torch sides all in one real-torch process (real transformers.Trainer); then the run directories
are read back, and `ms-ptuning compare` tabulates a directory that real transformers.Trainer wrote. One more test
goes through `compare_torch.sh --task` itself (both sides as subprocesses, wall time and peak RSS measured).
Scores are not judged here: the documented runs (benchmarks/REFERENCE_RUNS.md) are for that."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ms_ptuning import cli
from ms_ptuning.comparison import ms_side, report
from ms_ptuning.comparison.driver import step_agreement
from ms_ptuning.comparison.runs import load_run
from tiny_runs import same_process_runs, save_tiny_bert  # noqa: F401  (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "tasks")
NO_DROPOUT = ["--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0"]
# two steps, an evaluation after each (the best of two is chosen on both sides)
TWO_STEPS = ["--per_device_train_batch_size", "2", "--max_steps", "2", "--learning_rate", "1e-2", "--seed", "11",
             "--eval_strategy", "steps", "--eval_steps", "1", "--logging_steps", "1", "--save_strategy", "no",
             "--backend", "eager", *NO_DROPOUT]
TASKS = {"mrpc": ["--mode", "prefix", "--max_seq_length", "48"],
         "conll2003": ["--mode", "prefix", "--eval_splits", "test"],
         "squad": ["--mode", "finetune", "--max_seq_length", "192"],
         "copa": ["--mode", "prompt", "--max_seq_length", "32"]}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")), max_position_embeddings=256)


@pytest.fixture(scope="module")
def both_sides(model_dir, same_process_runs, tmp_path_factory):  # noqa: F811
    """{task: (ms run, torch run, exchange dir, torch dir)}: each task trained on both sides."""
    root = tmp_path_factory.mktemp("comparison")
    pairs = {}
    for task, flags in TASKS.items():
        exchange, ms_dir, torch_dir = (str(root / part / task) for part in ("exchange", "ms", "torch"))
        argv = ["--task", task, "--model_name_or_path", model_dir, "--data_dir", os.path.join(FIXTURES, task),
                "--output_dir", ms_dir, *TWO_STEPS, *flags]
        assert ms_side.main([exchange, *argv]) == 0
        pairs[task] = (exchange, ms_dir, torch_dir)
    argv = [sys.executable, "-m", "ms_ptuning.comparison.torch_side"]
    for exchange, _, torch_dir in pairs.values():
        argv += [exchange, torch_dir]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return {task: (load_run(ms_dir), load_run(torch_dir), exchange, torch_dir)
            for task, (exchange, ms_dir, torch_dir) in pairs.items()}


@pytest.mark.parametrize("task", list(TASKS))
def test_both_sides_train_the_same_run(task, both_sides):
    ms, reference, _, torch_dir = both_sides[task]
    assert ms["kind"] == "ms_ptuning" and reference["kind"] == "transformers"
    assert ms["metric"] == reference["metric"] and ms["steps"] == reference["steps"] == 2
    # same examples, initial weights, order and settings, no dropout: the same losses step by step
    check = step_agreement(ms, reference, 2)
    assert check["max_relative"] < 1e-4, check
    # THUDM's protocol on both: dev scored at both steps, the best one chosen, its test metrics reported. The
    # dev losses agree; accuracies of a tiny random model can flip on near-ties (COPA's logits differ ~1e-5)
    assert [step for step, _ in ms["dev"]] == [step for step, _ in reference["dev"]] == [1, 2]
    dev_losses = np.array([[loss for _, loss in run["dev_loss"]] for run in (ms, reference)])
    assert np.allclose(dev_losses[0], dev_losses[1], rtol=1e-4), dev_losses
    for run in (ms, reference):
        assert run["best_dev"] == max(value for _, value in run["dev"])
        assert run["best_step"] == next(step for step, value in run["dev"] if value == run["best_dev"])
    assert set(ms["test"]) == set(reference["test"])
    if task == "conll2003":
        assert {"test_f1", "test_precision", "test_recall"} <= set(reference["test"])
    with open(os.path.join(torch_dir, "step_losses.json")) as handle:
        assert json.load(handle)["mindnlp_imported"] is False  # real torch, never mindtorch


def test_compare_tabulates_a_transformers_trainer_directory(both_sides, tmp_path, capsys):
    _, _, _, torch_dir = both_sides["conll2003"]
    ms_dir = both_sides["conll2003"][0]["directory"]
    assert not os.path.exists(os.path.join(torch_dir, "results.json"))  # only what transformers.Trainer writes
    assert cli.main(["compare", ms_dir, torch_dir, "--output_dir", str(tmp_path)]) == 0  # ms-ptuning compare
    table = capsys.readouterr().out
    assert "eval_f1" in table and "test_f1" in table
    with open(tmp_path / "comparison.json") as handle:
        written = json.load(handle)
    groups = list(written["groups"].values())
    assert [len(group["runs"]) for group in groups] == [1, 1]
    assert groups[0]["runs"][0]["best_dev"] == pytest.approx(groups[1]["runs"][0]["best_dev"])
    assert os.path.getsize(tmp_path / "comparison.png") > 10_000
    assert cli.main(["compare", str(tmp_path / "missing")]) == 2


def test_spread_rule():
    def runs(values):
        return [{"best_dev": value, "test": {}} for value in values]
    inside = report.difference(runs([0.70, 0.72, 0.74]), runs([0.71, 0.73, 0.75]), "best_dev")
    assert inside["delta"] == pytest.approx(0.01) and inside["within"]
    assert inside["bound"] == pytest.approx(2 * np.sqrt(2 * 0.02 ** 2 / 3))
    assert not report.difference(runs([0.70, 0.71, 0.72]), runs([0.80, 0.81, 0.82]), "best_dev")["within"]
    assert report.difference(runs([0.7]), runs([0.8]), "best_dev")["within"] is None  # one seed: no spread


def test_compare_torch_script_runs_both_sides(model_dir, tmp_path):
    """`compare_torch.sh --task` on a pair task, one seed, the exact check over 2 steps."""
    output = tmp_path / "out"
    argv = ["bash", os.path.join(ROOT, "scripts", "compare_torch.sh"), "--task", "mrpc", "--model_name_or_path",
            model_dir, "--data_dir", os.path.join(FIXTURES, "mrpc"), "--seeds", "5", "--output_dir", str(output),
            "--dropout", "0", "--compare_steps", "2", "--per_device_train_batch_size", "2", "--max_seq_length", "48",
            "--backend", "eager"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "exact check: worst" in result.stdout and "PASS" in result.stdout
    with open(output / "comparison.json") as handle:
        written = json.load(handle)
    for group in ("ms_ptuning", "torch"):
        run = written["groups"][group]["runs"][0]
        assert run["steps"] == 2 and run["wall_seconds"] > 0 and run["peak_rss_mb"] > 50
    assert written["exact_check"]["passed"] and os.path.exists(output / "comparison.png")
