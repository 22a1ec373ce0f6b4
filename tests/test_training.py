"""The training loop: the loss falls, frozen weights stay frozen, adapters round-trip, resume is exact,
bad labels and an occupied output directory are refused."""

import json
import os
import shutil

import numpy as np
import pytest

from ms_ptuning.adapters import load_adapter, save_adapter
from ms_ptuning.backbones import build_backbone
from ms_ptuning.backend import seed_everything, torch
from ms_ptuning.config import PTuningConfig
from ms_ptuning.data.dataset import ArrayDataset
from ms_ptuning.metrics import classification_metrics
from ms_ptuning.models import HEADS
from ms_ptuning.training import Trainer, TrainingArguments
from ms_ptuning.training.checkpoint import list_checkpoints
from ms_ptuning.weights import named_weights, to_numpy, trainable_weights
from tiny_backbones import tiny_config

N, T = 32, 8


def learnable_dataset(seed: int = 0) -> ArrayDataset:
    """Label 1 sentences use words 10-49, label 0 sentences words 55-99: separable by any of the modes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, N)
    ids = np.where(labels[:, None] == 1, rng.integers(10, 50, (N, T)), rng.integers(55, 100, (N, T)))
    ids[:, 0] = 2
    return ArrayDataset({"input_ids": ids.astype(np.int64), "attention_mask": np.ones((N, T), np.int64),
                         "labels": labels.astype(np.int64)})


def build(mode: str, dropout: float = 0.0, **config):
    seed_everything(0)
    backbone = build_backbone(tiny_config("bert", hidden_dropout_prob=dropout, initializer_range=0.3))
    return HEADS["sequence_classification"](backbone, PTuningConfig(mode=mode, pre_seq_len=4, prefix_dropout=dropout,
                                                                    classifier_dropout=dropout, **config))


def arguments(output_dir, **overrides):
    values = dict(output_dir=str(output_dir), learning_rate=1e-2, per_device_train_batch_size=8,
                  per_device_eval_batch_size=16, num_train_epochs=1, logging_steps=1, eval_strategy="no",
                  save_strategy="no", report_to=[], seed=3, disable_tqdm=True)
    return TrainingArguments(**{**values, **overrides})


def losses_logged(output_dir) -> list:
    with open(os.path.join(output_dir, "metrics.jsonl")) as handle:
        return [record["loss"] for record in map(json.loads, handle) if "loss" in record]


@pytest.mark.parametrize("mode, lr", [("prefix", 2e-2), ("prompt", 1e-2), ("finetune", 2e-3)])
def test_loss_falls_and_frozen_weights_stay_bit_identical(tmp_path, mode, lr):
    model = build(mode)
    frozen_before = {name: value for name, value in to_numpy(named_weights(model)).items()
                     if name not in trainable_weights(model)}
    trainer = Trainer(model, arguments(tmp_path, learning_rate=lr, num_train_epochs=12, lr_scheduler_type="constant"),
                      train_dataset=learnable_dataset())
    trainer.train()  # 4 batches × 12 epochs = 48 optimizer steps
    losses = losses_logged(tmp_path)
    assert len(losses) == 48
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    frozen_after = {name: value for name, value in to_numpy(named_weights(model)).items() if name in frozen_before}
    assert (mode == "finetune") == (not frozen_before)
    for name, value in frozen_before.items():
        assert np.array_equal(value, frozen_after[name]), name


def test_gradient_accumulation_and_clipping_are_applied(tmp_path):
    model = build("prefix")
    trainer = Trainer(model, arguments(tmp_path, gradient_accumulation_steps=3, max_grad_norm=1e-3), train_dataset=learnable_dataset())
    result = trainer.train()
    assert result.global_step == 2  # 4 batches: one update of 3 batches, one of the epoch's last batch
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if '"grad_norm"' in line]
    assert len(records) == 2 and all(record["grad_norm"] > 1e-3 for record in records)  # logged before clipping


def test_adapter_save_load_gives_identical_logits(tmp_path):
    model = build("prompt", prompt_encoder_type="lstm")
    Trainer(model, arguments(tmp_path / "run", max_steps=3), train_dataset=learnable_dataset()).train()
    save_adapter(model, tmp_path / "adapter")
    reloaded = build("prompt", prompt_encoder_type="lstm")
    load_adapter(reloaded, tmp_path / "adapter")
    batch = {k: torch.tensor(v) for k, v in learnable_dataset().batch(np.arange(6)).items()}
    model.set_train(False)
    reloaded.set_train(False)
    assert np.array_equal(model(**batch)[1].asnumpy(), reloaded(**batch)[1].asnumpy())
    assert any("lstm" in name for name in trainable_weights(reloaded))  # the reparameterization survives
    other = build("prompt", prompt_encoder_type="mlp")
    with pytest.raises(ValueError, match="ptuning_config"):
        load_adapter(other, tmp_path / "adapter")


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    """Dropout on, shuffling on, linear decay over 7 steps: resuming from the step-2 checkpoint (as left by a
    run killed after it) ends on the uninterrupted run's weights, bit for bit."""
    settings = dict(max_steps=7, save_strategy="steps", save_steps=2, save_total_limit=None)
    straight = build("prefix", dropout=0.1)
    Trainer(straight, arguments(tmp_path / "straight", **settings), train_dataset=learnable_dataset()).train()
    assert [os.path.basename(p) for p in list_checkpoints(tmp_path / "straight")] == [
        "checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-7"]  # HF saves the last step too

    (tmp_path / "killed").mkdir()
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", tmp_path / "killed" / "checkpoint-2")
    resumed = build("prefix", dropout=0.1)  # a fresh process would rebuild the model like this
    Trainer(resumed, arguments(tmp_path / "killed", **settings), train_dataset=learnable_dataset()).train(resume_from_checkpoint=True)
    expected, actual = to_numpy(trainable_weights(straight)), to_numpy(trainable_weights(resumed))
    for name in expected:
        assert np.array_equal(expected[name], actual[name]), name
    # the resumed log starts from the checkpoint's log history: the whole run's losses, as the straight run's
    assert losses_logged(tmp_path / "straight") == losses_logged(tmp_path / "killed")


def test_evaluation_selects_and_restores_the_best_model(tmp_path):
    model = build("prefix")
    args = arguments(tmp_path, num_train_epochs=3, eval_strategy="epoch", metric_for_best_model="accuracy",
                     load_best_model_at_end=True, save_strategy="epoch")
    data = learnable_dataset()
    trainer = Trainer(model, args, train_dataset=data, eval_dataset=data,
                      compute_metrics=lambda prediction: classification_metrics(prediction.predictions,
                                                                                prediction.label_ids))
    trainer.train()
    evals = [json.loads(line) for line in open(tmp_path / "metrics.jsonl") if "eval_accuracy" in line]
    assert len(evals) == 3 and trainer.state.best_metric == max(e["eval_accuracy"] for e in evals)
    assert trainer.evaluate()["eval_accuracy"] == trainer.state.best_metric
    assert os.path.getsize(tmp_path / "curves.png") > 0


def test_labels_outside_the_classes_are_refused(tmp_path):
    data = learnable_dataset()
    data.columns["labels"][5] = 2
    with pytest.raises(ValueError, match="label 2 at row 5 is outside \\[0, 2\\)"):
        Trainer(build("prefix"), arguments(tmp_path), train_dataset=data)


def test_an_existing_run_is_never_overwritten_silently(tmp_path):
    Trainer(build("prefix"), arguments(tmp_path, max_steps=1), train_dataset=learnable_dataset()).train()
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        Trainer(build("prefix"), arguments(tmp_path, max_steps=1), train_dataset=learnable_dataset()).train()
    assert (tmp_path / "metrics.jsonl").read_text() == before
    Trainer(build("prefix"), arguments(tmp_path, max_steps=1, overwrite_output_dir=True), train_dataset=learnable_dataset()).train()
