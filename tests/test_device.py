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

# Every command that takes --device_target, called through its main() as its console entry does, in one
# process (MindSpore can be asked again after a failed set_device); prints {command: exit status}.
COMMANDS = {
    "ms_ptuning.run": "from ms_ptuning.run import main; main(['--task', 'rte', '--model_name_or_path', 'm', "
                      "'--output_dir', OUT + '/run'] + FLAGS)",
    "ms-ptuning predict": "from ms_ptuning.predict import main; main(['--adapter', 'a', '--input', INPUT, '--output', "
                          "OUT + '/p.jsonl'] + FLAGS)",
    "ms_ptuning.demo": "from ms_ptuning.demo import main; main(['--output_dir', OUT + '/demo'] + FLAGS)",
    "ms_ptuning.summarization": "from ms_ptuning.summarization import main; main(['--output_dir', OUT + '/s'] + FLAGS)",
    "ms_ptuning.lama.train": "from ms_ptuning.lama.train import main; main(['--model_dir', 'm', '--data_dir', 'd', "
                             "'--relation', 'P19', '--output_dir', OUT + '/lama'] + FLAGS)",
    "benchmarks.run": "from benchmarks.run import main; main(['--output_dir', OUT + '/b'] + FLAGS)",
    "check_device": "from ms_ptuning.device.check import main; main(FLAGS)",
}


def run_commands(flags: list, tmp_path) -> tuple:
    """({command: exit status}, stderr lines) of every command run with `flags`."""
    lines = [f"OUT, INPUT, FLAGS = {str(tmp_path)!r}, {os.path.join(OWN_DATA, 'reviews_new.jsonl')!r}, {flags!r}",
             "statuses = {}"]
    for name, call in COMMANDS.items():
        lines += [call.replace("main(", "status = main(", 1), f"statuses[{name!r}] = status"]
    lines.append("import json; print(json.dumps(statuses))")
    result = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr.splitlines()


@pytest.mark.parametrize("target, remedy", [
    ("Ascend", "install CANN 8.2.RC1 and source its set_env.sh"),
    ("GPU", "install CUDA 11.6 and cuDNN 8 and put their libraries on LD_LIBRARY_PATH")])
def test_a_device_that_is_not_there_stops_every_command_with_one_line(target, remedy, tmp_path):
    """On this CPU-only machine: exit status 2 and exactly one line per command, naming the device, the
    libraries the loader could not find, what to install and the check to run next."""
    if os.path.exists("/usr/local/Ascend") or os.path.exists("/dev/nvidia0"):
        pytest.skip("a device may be installed here")
    statuses, stderr = run_commands(["--device_target", target], tmp_path)
    assert statuses == {name: 2 for name in COMMANDS}
    assert len(stderr) == len(COMMANDS), stderr
    library = "libge_runner.so" if target == "Ascend" else "libcudart.so"
    for name, line in zip(COMMANDS, stderr):
        assert line.startswith(f"{name}: error: --device_target {target}: MindSpore cannot load its {target} "
                               "backend here ("), line
        assert library in line and " not found); " in line, line
        assert line.endswith(f"{remedy}, then run scripts/check_device.sh --device_target {target}"), line


def test_jit_levels_mindspore_does_not_run_here_are_refused_with_one_line(tmp_path):
    """O2 is CANN's GraphEngine (Ascend only); O3 does not exist; bf16 has no CPU kernels."""
    for flags, message in ((["--jit_level", "O2"], "--jit_level O2: MindSpore runs O2 through CANN's GraphEngine, "
                                                   "on Ascend only; on CPU use O0 or O1"),
                           (["--jit_level", "O3"], "--jit_level must be one of O0, O1, O2, got 'O3'")):
        statuses, stderr = run_commands(flags, tmp_path)
        assert statuses == {name: 2 for name in COMMANDS}
        assert stderr == [f"{name}: error: {message}" for name in COMMANDS]


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
