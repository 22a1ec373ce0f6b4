"""Crash safety of training runs: a `python -m ms_ptuning.run` process killed with SIGKILL at a random step and
resumed with --resume ends bit-identical to an uninterrupted run (on the graph backend, BERT's default; the
Trainer-level resume on eager is in test_training.py); half-written checkpoints are never picked;
a resume with other settings, a NaN/Inf step and an occupied output directory are refused without damage."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from mindspore import ops
from safetensors.numpy import load_file

from ms_ptuning import run as run_module
from ms_ptuning.backbones import build_backbone
from ms_ptuning.backend import seed_everything
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.dataset import ArrayDataset, batch_indices, epoch_order
from ms_ptuning.models import HEADS
from ms_ptuning.native import to_native
from ms_ptuning.training import EagerSteps, GraphSteps, Trainer
from ms_ptuning.training.checkpoint import latest_checkpoint, list_checkpoints
from ms_ptuning.training.trainer import NonFiniteLossError
from ms_ptuning.weights import assign_weights, named_weights, to_numpy, trainable_weights
from tiny_runs import same_process_runs  # noqa: F401  (a fixture)
from tiny_backbones import tiny_config
from tiny_runs import save_tiny_bert, tiny_arguments, tiny_classifier, tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "tests", "fixtures", "tasks", "sst2")
WALL_CLOCK = ("_runtime", "_per_second")
POISON_ID = 3  # a word id tiny_dataset never draws
MAX_STEPS = 12  # 5 examples in batches of 2: 3 steps an epoch, 4 epochs
RUN_FLAGS = ["--task", "sst2", "--data_dir", SST2, "--mode", "prefix", "--pre_seq_len", "4", "--max_seq_length", "16",
             "--per_device_train_batch_size", "2", "--max_steps", str(MAX_STEPS), "--learning_rate", "1e-2",
             "--hidden_dropout_prob", "0.1", "--save_strategy", "steps", "--save_steps", "1",
             "--eval_strategy", "steps", "--eval_steps", "4", "--logging_steps", "1", "--seed", "5",
             "--disable_tqdm", "True"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


def start_run(model_dir: str, output_dir: str, *extra: str) -> subprocess.Popen:
    """The run in a child process; its output goes to a file next to output_dir (a pipe nobody reads while
    the test polls could fill up and stall it)."""
    with open(f"{output_dir}.{len(extra)}.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "ms_ptuning.run", *RUN_FLAGS, "--model_name_or_path",
                                    model_dir, "--output_dir", output_dir, *extra], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    process.log = log.name
    return process


def log_tail(process: subprocess.Popen) -> str:
    with open(process.log) as handle:
        return handle.read()[-3000:]


def finish(process: subprocess.Popen) -> None:
    process.wait(timeout=300)
    assert process.returncode == 0, log_tail(process)


def kill_after_checkpoint(process: subprocess.Popen, output_dir: str, step: int, fraction: float) -> str:
    """SIGKILL a `fraction` of one step after checkpoint-`step` appears: somewhere in the next step, its
    evaluation, or its checkpoint write and pruning. A step is the shortest interval seen between two
    consecutive checkpoints (one without an evaluation or a compilation in it), so with four steps left the kill
    lands before the run can end however fast this machine steps."""
    appeared = {}
    while step not in appeared:
        assert process.poll() is None, f"the run ended before checkpoint-{step}: {log_tail(process)}"
        for name in os.listdir(output_dir) if os.path.isdir(output_dir) else []:
            number = name.removeprefix("checkpoint-")
            if number.isdigit():
                appeared.setdefault(int(number), time.monotonic())
        time.sleep(0.001)
    intervals = [appeared[n] - appeared[n - 1] for n in appeared if n - 1 in appeared]
    assert intervals, f"no two consecutive checkpoints were seen: {sorted(appeared)}"
    delay = fraction * min(intervals)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before the kill"
    return f"{delay:.3f} s"


def log_records(output_dir: str) -> list:
    """metrics.jsonl without the wall-clock figures (runtime, throughput), which no two runs share."""
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [{key: value for key, value in json.loads(line).items() if not key.endswith(WALL_CLOCK)}
                for line in handle]


def directory_state(directory: str) -> dict:
    """relative path → bytes of every file under `directory`."""
    state = {}
    for folder, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                state[os.path.relpath(os.path.join(folder, name), directory)] = handle.read()
    return state


def test_killed_run_resumes_bit_identical(model_dir, same_process_runs, tmp_path, record_property):
    seed = int.from_bytes(os.urandom(4), "little")
    choose = random.Random(seed)
    kill_step, fraction = choose.randint(3, MAX_STEPS - 4), choose.random()  # resumes cross an epoch
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")
    straight = start_run(model_dir, straight_dir)  # both start together: the imports overlap
    killed = start_run(model_dir, killed_dir)
    delay = kill_after_checkpoint(killed, killed_dir, kill_step, fraction)
    context = f"kill after checkpoint-{kill_step} + {fraction:.2f} of a step = {delay} (random seed {seed})"
    record_property("fault", context)  # in --junitxml reports
    finish(straight)
    record_property("resumed_from", os.path.basename(latest_checkpoint(killed_dir)))

    assert latest_checkpoint(killed_dir) and not os.path.exists(os.path.join(killed_dir, "results.json")), context
    # a checkpoint write cut short, as a kill leaves it: it claims a later step and must never be picked
    planted = os.path.join(killed_dir, f".checkpoint-{MAX_STEPS + 1}.tmp-planted")
    shutil.copytree(os.path.join(straight_dir, f"checkpoint-{MAX_STEPS}"), planted)
    with open(os.path.join(planted, "trainable.safetensors"), "r+b") as handle:
        handle.truncate(os.path.getsize(handle.name) // 2)

    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint-\d+: .*learning_rate: 0\.01 → 0\.02"):
        run_module.run(*run_module.parse(RUN_FLAGS + ["--model_name_or_path", model_dir, "--output_dir", killed_dir,
                                                      "--resume", "True", "--learning_rate", "2e-2"]))
    assert os.path.isdir(planted), "a refused resume must change nothing"

    finish(start_run(model_dir, killed_dir, "--resume", "True"))
    expected = load_file(os.path.join(straight_dir, "adapter", "adapter.safetensors"))
    actual = load_file(os.path.join(killed_dir, "adapter", "adapter.safetensors"))
    assert sorted(expected) == sorted(actual)
    for name in expected:
        assert np.array_equal(expected[name], actual[name]), f"{name} differs; {context}"
    assert log_records(killed_dir) == log_records(straight_dir), context  # every loss, lr, grad norm and eval
    with open(os.path.join(straight_dir, "results.json")) as a, open(os.path.join(killed_dir, "results.json")) as b:
        first, second = json.load(a), json.load(b)
    assert first["backend"] == second["backend"] == "graph"  # BERT's default: the compiled step engine
    assert {k: v for k, v in first.items() if k.startswith(("eval_", "best_")) and not k.endswith(WALL_CLOCK)} == \
        {k: v for k, v in second.items() if k.startswith(("eval_", "best_")) and not k.endswith(WALL_CLOCK)}
    assert not [name for name in os.listdir(killed_dir) if name.startswith(".")], "leftovers were not removed"

    # the finished run's directory is never overwritten without --overwrite_output_dir
    before = directory_state(straight_dir)
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        run_module.run(*run_module.parse(RUN_FLAGS + ["--model_name_or_path", model_dir, "--output_dir", straight_dir]))
    assert directory_state(straight_dir) == before


def test_the_latest_complete_checkpoint_is_picked(tmp_path):
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9", ".checkpoint-12.tmp-x1", "checkpoint-x",
                 ".discarded-ab/checkpoint-11"):
        os.makedirs(tmp_path / name)
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")  # by step, not by name
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == [
        "checkpoint-2", "checkpoint-9", "checkpoint-10"]


def test_resume_without_a_checkpoint_is_refused(model_dir, same_process_runs, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n')
    with pytest.raises(FileNotFoundError, match=r"nothing to resume: .* no complete checkpoint-<step>"):
        run_module.run(*run_module.parse(RUN_FLAGS + ["--model_name_or_path", model_dir, "--output_dir",
                                                      str(tmp_path), "--resume", "True"]))
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


# ---- in-process checks with a tiny classifier ---------------------------------------------------------

def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    Trainer(tiny_classifier(), tiny_arguments(tmp_path), train_dataset=tiny_dataset()).train()
    before = directory_state(str(tmp_path))
    refusals = [
        (tiny_classifier(), tiny_arguments(tmp_path, learning_rate=2e-2, per_device_train_batch_size=3), tiny_dataset(),
         r"learning_rate: 0\.01 → 0\.02; per_device_train_batch_size: 4 → 3"),
        (tiny_classifier(), tiny_arguments(tmp_path, lr_scheduler_type="cosine", seed=4), tiny_dataset(),
         r"seed: 3 → 4; lr_scheduler_type: 'linear' → 'cosine'"),
        (tiny_classifier(pre_seq_len=8), tiny_arguments(tmp_path), tiny_dataset(),
         r"ptuning_config\.pre_seq_len: 4 → 8"),
        (tiny_classifier(), tiny_arguments(tmp_path), tiny_dataset(seed=1), r"train_dataset\.sha256: ")]
    for model, args, data, message in refusals:
        with pytest.raises(ValueError, match=rf"cannot resume from .*checkpoint-2: .*{message}"):
            Trainer(model, args, train_dataset=data).train(resume_from_checkpoint=True)
    assert directory_state(str(tmp_path)) == before


class RecordingDataset(ArrayDataset):
    """Remembers the rows of every batch it gives out."""

    def batch(self, indices):
        self.batches.append(list(indices))
        return super().batch(indices)


def test_every_epoch_draws_its_own_order(tmp_path):
    """A resume recomputes the order of its epoch from (seed, epoch), so the uninterrupted run must too (it
    once kept epoch 0's order for every epoch, which only a resume past an epoch's end could notice)."""
    data = RecordingDataset(tiny_dataset().columns)
    data.batches = []
    Trainer(tiny_classifier(), tiny_arguments(tmp_path, max_steps=6, save_strategy="no"), train_dataset=data).train()
    expected = [list(batch) for epoch in (0, 1) for batch in batch_indices(epoch_order(12, 3, epoch), 4)]
    assert data.batches == expected and expected[:3] != expected[3:]


class PoisonedSteps(EagerSteps):
    """Makes the loss (or only the gradient) of one optimizer step non-finite."""

    poison_step, poison, step = None, None, 0

    def train_step(self, micro_batches, seeds, lr):
        self.step += 1
        return super().train_step(micro_batches, seeds, lr)

    def _scaled_loss(self, **inputs):
        loss = super()._scaled_loss(**inputs)
        if self.step != self.poison_step:
            return loss
        if self.poison == "loss":
            return loss * float("inf")
        weight = next(iter(self.params.values()))  # sqrt(|w - w|) is 0; its gradient 0 · ∞ is NaN
        return loss + ops.reduce_sum(ops.sqrt(ops.abs(ops.sub(weight, ops.stop_gradient(weight)))))


@pytest.mark.parametrize("poison, message", [("loss", r"loss=(inf|nan) grad_norm=\S+"),
                                             ("gradient", r"loss=\d\.\d+ grad_norm=(inf|nan)")])
def test_non_finite_step_stops_before_it_is_applied(tmp_path, poison, message):
    model = tiny_classifier()
    PoisonedSteps.poison_step, PoisonedSteps.poison = 3, poison
    trainer = Trainer(model, tiny_arguments(tmp_path, max_steps=4), train_dataset=tiny_dataset(), steps=PoisonedSteps)
    with pytest.raises(NonFiniteLossError, match=rf"step 3: {message}; training stopped before applying it\. "
                                                 rf"Last good checkpoint: .*checkpoint-2$"):
        trainer.train()
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == ["checkpoint-1", "checkpoint-2"]
    saved = load_file(os.path.join(tmp_path, "checkpoint-2", "trainable.safetensors"))
    weights = to_numpy(trainable_weights(model))
    for name, array in saved.items():  # the bad step changed nothing, and checkpoint-2 holds the weights
        assert np.array_equal(array, weights[name]) and np.isfinite(array).all(), name


@pytest.mark.parametrize("engine", [EagerSteps, GraphSteps])
def test_a_nan_from_the_data_stops_both_step_engines_before_it_is_applied(tmp_path, engine):
    """A NaN met in the forward pass (a word-embedding row that only step 3's batch looks up): on the
    compiled engine too, the step's loss and norm are read before the update graph runs, so the step is
    refused and the weights stay those of checkpoint-2."""
    seed_everything(0)
    model = HEADS["sequence_classification"](to_native(build_backbone(tiny_config("bert"))) if engine is GraphSteps
                                             else build_backbone(tiny_config("bert")),
                                             PTuningConfig(mode="prefix", pre_seq_len=4))
    name = "encoder.backbone.embeddings.word_embeddings.weight"  # the same name on both backends
    poisoned = to_numpy(named_weights(model))[name]
    poisoned[POISON_ID] = np.nan
    assign_weights(model, {name: poisoned}, strict=False)
    data = tiny_dataset()
    step_three = batch_indices(epoch_order(len(data), 3, 0), 4)[2]  # tiny_arguments' seed 3, batches of 4
    data.columns["input_ids"][step_three[0], 2] = POISON_ID
    trainer = Trainer(model, tiny_arguments(tmp_path, max_steps=4), train_dataset=data, steps=engine)
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss=nan grad_norm=nan; training stopped before "
                                                 r"applying it\. Last good checkpoint: .*checkpoint-2$"):
        trainer.train()
    saved = load_file(os.path.join(tmp_path, "checkpoint-2", "trainable.safetensors"))
    weights = to_numpy(trainable_weights(model))
    assert sorted(saved) == sorted(weights)
    for name, array in saved.items():
        assert np.array_equal(array, weights[name]) and np.isfinite(array).all(), name
