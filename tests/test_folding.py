"""Folded encoders: the prefix/prompt is computed once and reused; outputs stay the same."""

import numpy as np
import pytest

from ms_ptuning.backbones import build_backbone
from ms_ptuning.backend import seed_everything, torch
from ms_ptuning.config import PTuningConfig
from ms_ptuning.encoders import fold_encoders
from ms_ptuning.models import HEADS
from tiny_backbones import tiny_config


@pytest.mark.parametrize("config", [dict(mode="prefix", prefix_projection=True, prefix_hidden_size=32),
                                    dict(mode="prompt", prompt_encoder_type="lstm")])
def test_folded_outputs_equal_unfolded(config):
    seed_everything(0)
    model = HEADS["sequence_classification"](build_backbone(tiny_config("bert")), PTuningConfig(pre_seq_len=5, **config))
    model.set_train(False)
    rng = np.random.default_rng(0)
    batches = [{"input_ids": torch.tensor(rng.integers(3, 100, (b, 9))), "attention_mask": torch.ones(b, 9, dtype=torch.int64)}
               for b in (2, 5)]
    unfolded = [model(**batch)[1].asnumpy() for batch in batches]
    assert fold_encoders(model) == 1
    folded = [model(**batch)[1].asnumpy() for batch in batches]
    for before, after in zip(unfolded, folded):
        assert np.abs(before - after).max() <= 1e-6
    fold_encoders(model, fold=False)
    np.testing.assert_array_equal(model(**batches[0])[1].asnumpy(), unfolded[0])
