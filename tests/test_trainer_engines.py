"""The Trainer talks to its step engine only: the compiled GraphSteps plugs in through `steps=` and trains as
EagerSteps does (a small pure-MindSpore classifier), and a resume through the Trainer stays exact on it."""

import os
import shutil

import numpy as np

from ms_ptuning.data.dataset import ArrayDataset
from ms_ptuning.training import EagerSteps, Trainer
from ms_ptuning.training.graph_steps import GraphSteps
from ms_ptuning.weights import to_numpy, trainable_weights
from toy_classifier import arguments, rows, toy


def train(output_dir, steps, dropout: float = 0.0, resume=None, **overrides):
    """22 rows in global batches of 4 (a short last batch every epoch), accumulation 2, warmup then decay."""
    model = toy(dropout=dropout)
    args = arguments(output_dir, **{"max_steps": 9, "gradient_accumulation_steps": 2, "warmup_steps": 3,
                                    "logging_steps": 1, "save_strategy": "no", "disable_tqdm": True, **overrides})
    trainer = Trainer(model, args, train_dataset=ArrayDataset(rows(22, seed=1)), steps=steps)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def losses(trainer) -> list:
    return [record["loss"] for record in trainer.state.log_history if "loss" in record]


def test_graph_steps_through_the_trainer_match_eager_steps(tmp_path):
    eager, graph = train(tmp_path / "eager", EagerSteps), train(tmp_path / "graph", GraphSteps)
    assert len(losses(graph)) == 9
    np.testing.assert_allclose(losses(graph), losses(eager), rtol=1e-4)
    expected, actual = to_numpy(trainable_weights(eager.model)), to_numpy(trainable_weights(graph.model))
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=1e-5, err_msg=name)


def test_a_resume_through_the_trainer_is_exact_on_graph_steps(tmp_path):
    """Dropout on: the run resumed from checkpoint-4 ends on the straight run's weights and log, bit for bit."""
    settings = {"save_strategy": "steps", "save_steps": 4}
    straight = train(tmp_path / "straight", GraphSteps, dropout=0.2, **settings)
    os.makedirs(tmp_path / "resumed")
    shutil.copytree(tmp_path / "straight" / "checkpoint-4", tmp_path / "resumed" / "checkpoint-4")
    resumed = train(tmp_path / "resumed", GraphSteps, dropout=0.2, resume=True, **settings)
    assert losses(resumed) == losses(straight)
    expected, actual = to_numpy(trainable_weights(straight.model)), to_numpy(trainable_weights(resumed.model))
    assert all(np.array_equal(expected[name], actual[name]) for name in expected)
