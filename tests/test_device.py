"""The device layer (ms_ptuning/device/): a device MindSpore cannot load stops every command with one line,
`--jit_level` reaches the compiled graphs and is refused where MindSpore does not run it, and
`check_device` passes on CPU with its real checks (against torch and against a separate CPU run)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ms_ptuning import run as run_module
from ms_ptuning.device.check import print_table
from ms_ptuning.device.jit import jit_level, set_jit_level
from ms_ptuning.training.graph_steps import launch
from tiny_runs import same_process_runs, save_tiny_bert  # noqa: F401  (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_DATA = os.path.join(ROOT, "tests", "fixtures", "own_data")

# Every command that takes --device_target, called through its main() as its console entry does:
# command → (module, arguments before the flags under test)
COMMANDS = {
    "ms_ptuning.run": ("ms_ptuning.run", "['--task', 'rte', '--model_name_or_path', 'm', '--output_dir', OUT + '/r']"),
    "ms-ptuning predict": ("ms_ptuning.predict", "['--adapter', 'a', '--input', INPUT, '--output', OUT + '/p.jsonl']"),
    "ms_ptuning.demo": ("ms_ptuning.demo", "['--output_dir', OUT + '/demo']"),
    "ms_ptuning.summarization": ("ms_ptuning.summarization", "['--output_dir', OUT + '/s']"),
    "ms_ptuning.lama.train": ("ms_ptuning.lama.train", "['--model_dir', 'm', '--data_dir', 'd', '--relation', 'P19', "
                                                       "'--output_dir', OUT + '/lama']"),
    "ms_ptuning.chat": ("ms_ptuning.chat.train", "['--model_name_or_path', 'm', '--train_file', 't', "
                                                 "'--validation_file', 'v', '--output_dir', OUT + '/c']"),
    "benchmarks.run": ("benchmarks.run", "['--output_dir', OUT + '/b']"),
    "check_device": ("ms_ptuning.device.check", "[]"),
}
FLAG_SETS = {
    "Ascend": ["--device_target", "Ascend"],
    "GPU": ["--device_target", "GPU"],
    "O2": ["--jit_level", "O2"],  # CANN's GraphEngine: Ascend only
    "O3": ["--jit_level", "O3"],  # no such level
}
REFUSALS = {
    "Ascend": "--device_target Ascend: MindSpore cannot load its Ascend backend here (",
    "GPU": "--device_target GPU: MindSpore cannot load its GPU backend here (",
    "O2": "--jit_level O2: MindSpore runs O2 through CANN's GraphEngine, on Ascend only; on CPU use O0 or O1",
    "O3": "--jit_level must be one of O0, O1, O2, got 'O3'",
}
REMEDIES = {"Ascend": ("libge_runner.so", "install CANN 8.2.RC1 and source its set_env.sh"),
            "GPU": ("libcudart.so", "install CUDA 11.6 and cuDNN 8 and put their libraries on LD_LIBRARY_PATH")}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict:
    """flag set → ({command: exit status}, its stderr lines): every command run with each of FLAG_SETS, all in
    one process (MindSpore can be asked again after a failed set_device); every command must write exactly
    one line, so the lines split by count."""
    out = str(tmp_path_factory.mktemp("refusals"))
    body = [f"import {module}" for module, _ in COMMANDS.values()]
    body += [f"OUT, INPUT = {out!r}, {os.path.join(OWN_DATA, 'reviews_new.jsonl')!r}", "statuses = {}"]
    for label, flags in FLAG_SETS.items():
        body += [f"statuses[{label + ' ' + name!r}] = {module}.main({arguments} + {flags!r})"
                 for name, (module, arguments) in COMMANDS.items()]
    body.append("import json; print(json.dumps(statuses))")
    result = subprocess.run([sys.executable, "-c", "\n".join(body)], capture_output=True, text=True, cwd=ROOT,
                            timeout=900, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    statuses, stderr = json.loads(result.stdout.strip().splitlines()[-1]), result.stderr.splitlines()
    assert len(stderr) == len(FLAG_SETS) * len(COMMANDS), stderr
    return {label: ({name: statuses[f"{label} {name}"] for name in COMMANDS},
                    stderr[i * len(COMMANDS):(i + 1) * len(COMMANDS)]) for i, label in enumerate(FLAG_SETS)}


@pytest.mark.parametrize("label", FLAG_SETS)
def test_what_mindspore_cannot_run_here_stops_every_command_with_one_line(label, refusals):
    """On this CPU-only machine, a missing Ascend or GPU backend, O2 off Ascend and a level that does not
    exist: exit status 2 and exactly one line per command; a missing device names the libraries the loader
    could not find, what to install and the check to run next."""
    if label in REMEDIES and (os.path.exists("/usr/local/Ascend") or os.path.exists("/dev/nvidia0")):
        pytest.skip("a device may be installed here")
    statuses, stderr = refusals[label]
    assert statuses == {name: 2 for name in COMMANDS}
    for name, line in zip(COMMANDS, stderr):
        assert line.startswith(f"{name}: error: {REFUSALS[label]}"), line
        if label in REMEDIES:
            library, remedy = REMEDIES[label]
            assert library in line and " not found); " in line, line
            assert line.endswith(f"{remedy}, then run scripts/check_device.sh --device_target {label}"), line
        else:
            assert line == f"{name}: error: {REFUSALS[label]}"


class Doubler(nn.Cell):
    def construct(self, x):
        return ops.mul(x, 2.0)


def test_the_jit_level_reaches_every_compiled_cell():
    previous = jit_level()
    try:
        set_jit_level("O1")
        cell = Doubler()
        out = launch(cell, "doubler", [Tensor(np.ones(3, np.float32))], set(), announce=None)
        assert cell.jit_config_dict["jit_level"] == "O1"
        np.testing.assert_array_equal(out.asnumpy(), np.full(3, 2.0, np.float32))
    finally:
        set_jit_level(previous)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert") / "bert"))


def train_at(level: str, model_dir: str, output_dir) -> tuple:
    """(per-step losses, results.json) of a 6-step prefix run on the graph backend, dropout on."""
    argv = ["--task", "text_classification", "--model_name_or_path", model_dir, "--train_file",
            os.path.join(OWN_DATA, "reviews_train.csv"), "--validation_file", os.path.join(OWN_DATA, "reviews_dev.csv"),
            "--output_dir", str(output_dir), "--mode", "prefix", "--pre_seq_len", "4", "--backend", "graph",
            "--learning_rate", "3e-2", "--max_steps", "6", "--per_device_train_batch_size", "4", "--max_seq_length",
            "32", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--disable_tqdm", "True",
            "--jit_level", level]
    assert run_module.main(argv) == 0
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        losses = [record["loss"] for record in map(json.loads, handle) if "loss" in record]
    with open(os.path.join(output_dir, "results.json")) as handle:
        return np.array(losses), json.load(handle)


def test_a_run_at_o1_trains_the_same_steps_as_o0_and_records_its_level(tiny_bert, same_process_runs, tmp_path):
    """O1 adds graph optimisations and operator fusion: the same 6 steps (dropout on) give O0's losses up to
    float32 rounding, and results.json says which level and device ran."""
    try:
        fused, results = train_at("O1", tiny_bert, tmp_path / "o1")
        plain, _ = train_at("O0", tiny_bert, tmp_path / "o0")
    finally:
        set_jit_level("O0")
    assert results["jit_level"] == "O1" and results["device_target"] == "CPU" and results["backend"] == "graph"
    assert len(fused) == 6 and np.all(np.isfinite(fused))
    np.testing.assert_allclose(fused, plain, rtol=1e-5)


def test_the_table_counts_failures_and_fails_the_exit_status(capsys):
    from types import SimpleNamespace

    rows = [{"case": "bert/prefix", "check": "logits vs torch (max abs)", "value": "1e-07", "limit": "1e-05",
             "passed": True},
            {"case": "bert/prefix", "check": "gradients vs torch (max rel)", "value": "3e-03", "limit": "1e-04",
             "passed": False}]
    options = SimpleNamespace(device_target="CPU", mixed_precision="no")
    assert print_table(rows, options, 1.0) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("1 passed, 1 failed")
    assert "FAIL" in lines[-2] and lines[-3].endswith("pass")


def test_check_device_passes_on_cpu():
    """`scripts/check_device.sh` as a user runs it first (trimmed to one mode per model to stay affordable:
    every check still runs, against the torch reference and a separate CPU process)."""
    result = subprocess.run(["bash", os.path.join(ROOT, "scripts", "check_device.sh"), "--device_target", "CPU",
                             "--models", "bert,gpt2,deberta-v2", "--modes", "prefix"],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    rows = [line for line in lines if line.startswith(("bert/", "gpt2/", "deberta-v2/"))]
    assert len(rows) == 3 * 4 + 1  # logits, gradients, loss falls, losses vs CPU; GPT-2's greedy tokens
    assert all(row.endswith("  pass") for row in rows)
    assert lines[-1].startswith(f"{len(rows)} passed, 0 failed")
    assert "tolerances for CPU/no" in result.stdout
