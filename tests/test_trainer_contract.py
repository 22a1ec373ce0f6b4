"""The Trainer keeps Hugging Face's contract: callbacks fire in HF's order with a real TrainerState and
TrainerControl (and the control is obeyed), EarlyStoppingCallback stops a run and its state survives a
resume, trainer_state.json is HF's format, fractional step settings and save_strategy=best act as in HF, and
every TrainingArguments field is honoured or refused."""

import dataclasses
import glob
import json
import os
import struct
import sys

import numpy as np
import pytest

from ms_ptuning.adapters import load_adapter
from ms_ptuning.data.dataset import batch_indices, epoch_order
from ms_ptuning.run import RunTrainingArguments
from ms_ptuning.training import Trainer, TrainingArguments
from ms_ptuning.training.arguments import HONOURED, REFUSED, check_arguments, resolve_precision
from ms_ptuning.training.checkpoint import list_checkpoints
from ms_ptuning.weights import to_numpy, trainable_weights
from tiny_runs import tiny_arguments, tiny_classifier, tiny_dataset
from transformers import EarlyStoppingCallback, TrainerCallback, TrainerState
from transformers.trainer_utils import PredictionOutput, TrainOutput

EVENTS = ("on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin", "on_optimizer_step", "on_step_end",
          "on_log", "on_evaluate", "on_predict", "on_save", "on_epoch_end", "on_train_end")


class Recorder(TrainerCallback):
    """Records (event, global step) and can set a control flag at a given step's end."""

    def __init__(self, flag_at=None):
        self.events, self.flag_at = [], flag_at or {}

    def __getattribute__(self, name):
        if name in EVENTS:
            def record(args, state, control, **kwargs):
                self.events.append((name, state.global_step))
                if name == "on_step_end" and state.global_step in self.flag_at:
                    setattr(control, self.flag_at[state.global_step], True)
            return record
        return super().__getattribute__(name)


def checkpoint_names(output_dir) -> list:
    return [os.path.basename(path) for path in list_checkpoints(str(output_dir))]


def test_callbacks_fire_in_hf_order_and_outputs_are_hf_types(tmp_path):
    recorder = Recorder()
    data = tiny_dataset()  # 12 examples, batches of 4: 3 steps an epoch
    trainer = Trainer(tiny_classifier(), tiny_arguments(tmp_path, max_steps=3, save_strategy="epoch",
                                                        eval_strategy="epoch", logging_steps=2),
                      train_dataset=data, eval_dataset=data, callbacks=[recorder])
    output = trainer.train()
    step = [("on_step_begin", s - 1) for s in (1, 2, 3)]
    expected = [("on_init_end", 0), ("on_train_begin", 0), ("on_epoch_begin", 0),
                step[0], ("on_optimizer_step", 0), ("on_step_end", 1),
                step[1], ("on_optimizer_step", 1), ("on_step_end", 2), ("on_log", 2),
                step[2], ("on_optimizer_step", 2), ("on_step_end", 3),
                ("on_epoch_end", 3), ("on_log", 3), ("on_evaluate", 3), ("on_save", 3), ("on_log", 3), ("on_train_end", 3)]
    assert recorder.events == expected
    assert isinstance(output, TrainOutput) and output.global_step == 3 and np.isfinite(output.training_loss)
    assert [record["step"] for record in trainer.state.log_history] == [2, 3, 3]
    assert "eval_loss" in trainer.state.log_history[1] and "train_runtime" in trainer.state.log_history[2]
    saved = TrainerState.load_from_json(str(tmp_path / "checkpoint-3" / "trainer_state.json"))
    assert saved.global_step == 3 and saved.max_steps == 3 and saved.log_history == trainer.state.log_history[:2]
    prediction = trainer.predict(data)
    assert isinstance(prediction, PredictionOutput) and prediction.predictions.shape == (12, 2)
    assert np.array_equal(prediction.label_ids, data.columns["labels"]) and "test_loss" in prediction.metrics
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = tiny_classifier()
    load_adapter(reloaded, str(tmp_path / "saved"))
    expected_weights, actual = to_numpy(trainable_weights(trainer.model)), to_numpy(trainable_weights(reloaded))
    assert all(np.array_equal(expected_weights[name], actual[name]) for name in expected_weights)


def test_trainer_control_set_by_a_callback_is_obeyed(tmp_path):
    recorder = Recorder(flag_at={1: "should_save", 2: "should_evaluate", 3: "should_training_stop"})
    data = tiny_dataset()
    trainer = Trainer(tiny_classifier(), tiny_arguments(tmp_path, max_steps=9, save_strategy="no"),
                      train_dataset=data, eval_dataset=data, callbacks=[recorder])
    assert trainer.train().global_step == 3  # stopped, not run to max_steps
    assert checkpoint_names(tmp_path) == ["checkpoint-1"]
    assert [step for event, step in recorder.events if event == "on_evaluate"] == [2]


def early_stopping_run(output_dir, patience: int, **overrides):
    """learning_rate 0: the eval loss never improves after the first evaluation."""
    data = tiny_dataset()
    args = tiny_arguments(output_dir, **{"max_steps": 9, "learning_rate": 0.0, "eval_strategy": "steps", "eval_steps": 1,
                                         "metric_for_best_model": "loss", **overrides})
    trainer = Trainer(tiny_classifier(), args, train_dataset=data, eval_dataset=data,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)])
    trainer.train()
    return trainer


def test_early_stopping_stops_the_run_and_trainer_state_shows_why(tmp_path):
    trainer = early_stopping_run(tmp_path, patience=1)
    assert trainer.state.global_step == 2  # evaluation 2 did not improve on evaluation 1
    with open(tmp_path / "checkpoint-2" / "trainer_state.json") as handle:
        saved = json.load(handle)
    assert saved["global_step"] == 2 and saved["max_steps"] == 9
    evaluations = [record for record in saved["log_history"] if "eval_loss" in record]
    assert [record["step"] for record in evaluations] == [1, 2]
    assert saved["best_metric"] == evaluations[0]["eval_loss"] == evaluations[1]["eval_loss"]
    assert saved["best_global_step"] == 1
    assert saved["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"] == {"early_stopping_patience_counter": 1}
    assert saved["stateful_callbacks"]["TrainerControl"]["args"]["should_training_stop"] is True


@pytest.mark.parametrize("restore, stops_at", [(True, 3), (False, 4)])
def test_early_stopping_counter_survives_a_resume(tmp_path, restore, stops_at):
    """patience 2 stops the straight run at step 3. Resumed from checkpoint-2 (counter 1 stored) with
    restore_callback_states_from_checkpoint, it stops there too; without, a fresh counter needs 2 more."""
    straight = early_stopping_run(tmp_path / "straight", patience=2)
    assert straight.state.global_step == 3
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    os.rename(tmp_path / "straight" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = early_stopping_run(resumed_dir, patience=2, restore_callback_states_from_checkpoint=restore,
                                 resume_from_checkpoint=str(resumed_dir / "checkpoint-2"))
    assert resumed.state.global_step == stops_at


def test_fractional_steps_are_fractions_of_the_run_and_save_best_saves_new_bests(tmp_path):
    data = tiny_dataset()
    trainer = Trainer(tiny_classifier(), tiny_arguments(tmp_path / "fractions", max_steps=8, eval_strategy="steps",
                                                        eval_steps=0.25, save_steps=0.5, logging_steps=0.5),
                      train_dataset=data, eval_dataset=data)
    trainer.train()
    history = trainer.state.log_history
    assert [record["step"] for record in history if "eval_loss" in record] == [2, 4, 6, 8]
    assert [record["step"] for record in history if "loss" in record] == [4, 8]
    assert checkpoint_names(tmp_path / "fractions") == ["checkpoint-4", "checkpoint-8"]
    best = early_stopping_run(tmp_path / "best", patience=9, save_strategy="best", max_steps=3)
    assert best.state.global_step == 3 and checkpoint_names(tmp_path / "best") == ["checkpoint-1"]


class RecordingDataset:
    """tiny_dataset's columns; remembers the rows of every batch it gives out."""

    def __init__(self):
        self.columns, self.batches = tiny_dataset().columns, []

    def __len__(self):
        return 12

    def batch(self, indices):
        self.batches.append(list(indices))
        return {name: values[indices] for name, values in self.columns.items()}


def test_data_seed_orders_the_data_and_seed_the_rest(tmp_path):
    data = RecordingDataset()
    Trainer(tiny_classifier(), tiny_arguments(tmp_path, max_steps=3, save_strategy="no", data_seed=8),
            train_dataset=data).train()
    assert data.batches == [list(rows) for rows in batch_indices(epoch_order(12, 8, 0), 4)]
    assert data.batches != [list(rows) for rows in batch_indices(epoch_order(12, 3, 0), 4)]  # seed 3's order


def read_events(directory) -> list:
    """(tag, step, value) of every scalar in the tensorboard event files under `directory` (TFRecord framing:
    length, its crc, the Event protobuf, its crc)."""
    from tensorboardX.proto import event_pb2
    scalars = []
    for path in glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True):
        data, offset = open(path, "rb").read(), 0
        while offset < len(data):
            length = struct.unpack("<Q", data[offset:offset + 8])[0]
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            scalars += [(value.tag, event.step, value.simple_value) for value in event.summary.value
                        if value.HasField("simple_value")]
            offset += 16 + length
    return scalars


def test_report_to_tensorboard_writes_event_files_or_names_the_missing_package(tmp_path, monkeypatch):
    logs = tmp_path / "tb"
    trainer = Trainer(tiny_classifier(), tiny_arguments(tmp_path / "run", report_to=["tensorboard"],
                                                        logging_dir=str(logs), save_strategy="no"),
                      train_dataset=tiny_dataset())
    trainer.train()
    losses = [(step, value) for tag, step, value in read_events(str(logs)) if tag == "train/loss"]
    logged = [(record["step"], record["loss"]) for record in trainer.state.log_history if "loss" in record]
    assert [step for step, _ in losses] == [1, 2] and np.allclose(losses, logged)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if it were not installed
    with pytest.raises(ImportError, match="report_to tensorboard needs the tensorboardX package"):
        Trainer(tiny_classifier(), tiny_arguments(tmp_path / "other", report_to=["tensorboard"]),
                train_dataset=tiny_dataset())


def test_every_training_arguments_field_is_honoured_or_refused():
    fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    assert not set(HONOURED) & set(REFUSED)
    assert fields - set(HONOURED) - set(REFUSED) == set(), "a TrainingArguments field nobody decided on"
    assert set(HONOURED) | set(REFUSED) <= fields


def test_refused_arguments_stop_before_anything_is_written(tmp_path):
    check_arguments(TrainingArguments(output_dir=str(tmp_path)))  # the defaults pass
    args = TrainingArguments(output_dir=str(tmp_path / "run"), dataloader_num_workers=2, label_smoothing_factor=0.1,
                             optim="sgd", report_to=["wandb"], fp16=True, push_to_hub=False)
    with pytest.raises(ValueError) as refusal:
        Trainer(tiny_classifier(), args, train_dataset=tiny_dataset())
    for name in ("dataloader_num_workers=2", "label_smoothing_factor=0.1",
                 "optim='sgd'", "report_to=['wandb']", "fp16=True"):
        assert name in str(refusal.value)
    assert "push_to_hub" not in str(refusal.value) and not os.path.exists(tmp_path / "run")
    decaying = RunTrainingArguments(output_dir=str(tmp_path), lr_decay_per_epoch=0.95, warmup_steps=10)
    with pytest.raises(ValueError, match="warmup_steps/warmup_ratio with lr_decay_per_epoch"):
        check_arguments(decaying)


def test_fp16_flags_are_spellings_of_mixed_precision():
    args = RunTrainingArguments(output_dir="unused", fp16=True)
    resolve_precision(args)
    assert args.mixed_precision == "fp16"
    check_arguments(args)  # accepted once ms_ptuning.run mapped it
    with pytest.raises(ValueError, match="--fp16 conflicts with --mixed_precision bf16"):
        resolve_precision(RunTrainingArguments(output_dir="unused", fp16=True, mixed_precision="bf16"))


def test_datasets_given_positionally_in_the_old_order_are_refused(tmp_path):
    with pytest.raises(TypeError, match="third positional argument is data_collator"):
        Trainer(tiny_classifier(), tiny_arguments(tmp_path), tiny_dataset())
