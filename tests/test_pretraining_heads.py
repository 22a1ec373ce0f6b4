"""BERT pre-training heads as MindSpore Cells (ms_ptuning/models/pretraining_heads.py): parity with Hugging
Face's torch `BertPreTrainingHeads`, loading of HF `BertForPreTraining` checkpoints, the combined loss."""

import numpy as np
import pytest

from ms_ptuning.backend import torch
from ms_ptuning.backbones import build_backbone
from ms_ptuning.config import PTuningConfig
from ms_ptuning.models.pretraining_heads import BertForPreTraining, activation, load_pretrained_heads
from ms_ptuning.parity import compare_many
from ms_ptuning.weights import assign_weights, named_weights
import transformers
from tiny_backbones import tiny_config

VOCAB, BATCH, LENGTH = 100, 3, 10


def pretraining_batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    attention_mask = np.ones((BATCH, LENGTH), np.int64)
    attention_mask[2, 7:] = 0
    token_type_ids = np.zeros((BATCH, LENGTH), np.int64)
    token_type_ids[:, 5:] = 1
    labels = np.where(rng.random((BATCH, LENGTH)) < 0.3, rng.integers(5, VOCAB, (BATCH, LENGTH)), -100)
    labels[0, 1] = 17  # at least one masked position
    return {"input_ids": rng.integers(5, VOCAB, (BATCH, LENGTH)).astype(np.int64), "attention_mask": attention_mask,
            "token_type_ids": token_type_ids, "labels": labels.astype(np.int64),
            "next_sentence_label": np.array([0, 1, 1], np.int64)}


def test_mlm_and_nsp_heads_match_hugging_face_torch_heads_on_both_backends():
    """Fine-tuning mode: MLM and NSP logits, the summed loss and the gradient of every weight (the word
    embeddings receive the tied decoder's share) against HF's torch BertPreTrainingHeads, same weights, on
    the eager (mindnlp) backbone and on the graph one (native Cells, compiled as one GRAPH_MODE graph), and
    the two against each other."""
    config, ptuning, batch = tiny_config("bert", vocab_size=VOCAB), PTuningConfig(mode="finetune"), pretraining_batch()
    result = compare_many([("bert_pretraining", config, ptuning, batch)], ("eager", "graph"))[0]
    for backend in ("eager", "graph"):
        diffs = result[backend]
        print(f"bert_pretraining {backend} parity:", {k: v for k, v in diffs.items() if k != "grad_rel"})
        assert diffs["logits_max_abs"] <= 1e-5
        assert diffs["loss_abs"] <= 1e-5
        assert diffs["grad_max_rel"] <= 1e-4, diffs["grad_worst_param"]
        assert diffs["num_trainable_tensors"] == 2 + 16 * 2 + 5 + 2 + 5  # embeddings, layers, pooler, heads
    diffs = result["graph_vs_eager"]
    print(f"bert_pretraining graph vs eager: logits {diffs['logits_max_abs']:.1e}, loss {diffs['loss_abs']:.1e}, "
          f"gradients {diffs['grad_max_rel']:.1e}")
    assert diffs["logits_max_abs"] <= 1e-5 and diffs["loss_abs"] <= 1e-5 and diffs["grad_max_rel"] <= 1e-4


@pytest.fixture(scope="module")
def hf_model():
    """Hugging Face's own BertForPreTraining (its model code, running on mindnlp) with non-trivial head
    constants, and its state dict as numpy: a real HF checkpoint, tied decoder copies included."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(tiny_config("bert", vocab_size=VOCAB))
    model.eval()
    rng = np.random.default_rng(1)
    with torch.no_grad():
        model.cls.predictions.bias.copy_(torch.tensor(rng.normal(0, 0.5, VOCAB).astype(np.float32)))
        model.cls.predictions.transform.LayerNorm.weight.copy_(torch.tensor(rng.normal(1, 0.2, 64).astype(np.float32)))
    state = {name: tensor.detach().numpy().copy() for name, tensor in model.state_dict().items()}
    assert "cls.predictions.decoder.weight" in state and "cls.predictions.decoder.bias" in state
    return model, state


def ours_from_hf_state(state: dict) -> BertForPreTraining:
    model = BertForPreTraining(build_backbone(tiny_config("bert", vocab_size=VOCAB)), PTuningConfig(mode="finetune"))
    backbone = {"encoder.backbone." + name[len("bert."):]: value for name, value in state.items()
                if name.startswith("bert.") and "encoder.backbone." + name[len("bert."):] in named_weights(model)}
    assign_weights(model, backbone, strict=False, source="HF state")
    load_pretrained_heads(model, state, source="HF state")
    return model


def test_hugging_face_checkpoint_loads_into_the_cells(hf_model):
    hf, state = hf_model
    model = ours_from_hf_state(state)
    model.set_train(False)
    batch = pretraining_batch(seed=2)
    inputs = {name: torch.tensor(value) for name, value in batch.items()}
    ours_loss, (ours_mlm, ours_nsp) = model(**inputs)
    with torch.no_grad():
        theirs = hf(**inputs)
    mlm_diff = np.abs(ours_mlm.asnumpy() - theirs.prediction_logits.numpy()).max()
    nsp_diff = np.abs(ours_nsp.asnumpy() - theirs.seq_relationship_logits.numpy()).max()
    print(f"HF BertForPreTraining checkpoint: MLM max-abs {mlm_diff:.2e}, NSP max-abs {nsp_diff:.2e}")
    assert mlm_diff <= 1e-5 and nsp_diff <= 1e-5
    assert abs(float(ours_loss.asnumpy()) - float(theirs.loss.numpy())) <= 1e-5


def test_untied_or_incomplete_head_weights_are_refused(hf_model):
    _, state = hf_model
    model = ours_from_hf_state(state)
    untied = dict(state, **{"cls.predictions.decoder.weight": state["cls.predictions.decoder.weight"] + 1e-3})
    with pytest.raises(ValueError, match="decoder.weight is not tied"):
        load_pretrained_heads(model, untied, source="HF state")
    incomplete = {name: value for name, value in state.items() if not name.startswith("cls.seq_relationship")}
    with pytest.raises(ValueError, match="lacks head weights.*seq_relationship"):
        load_pretrained_heads(model, incomplete, source="HF state")
    untied_bias = dict(state, **{"cls.predictions.decoder.bias": state["cls.predictions.bias"] + 1})
    untied_bias.pop("cls.predictions.decoder.weight")
    with pytest.raises(ValueError, match="decoder.bias differs"):
        load_pretrained_heads(model, untied_bias, source="HF state")


def test_loss_terms_are_usable_alone(hf_model):
    _, state = hf_model
    model = ours_from_hf_state(state)
    model.set_train(False)
    batch = pretraining_batch(seed=3)
    inputs = {name: torch.tensor(value) for name, value in batch.items()}
    total, _ = model(**inputs)
    mlm_only, (mlm, _) = model(**{k: v for k, v in inputs.items() if k != "next_sentence_label"})
    nsp_only, (_, nsp) = model(**{k: v for k, v in inputs.items() if k != "labels"})
    no_loss, _ = model(**{k: v for k, v in inputs.items() if k not in ("labels", "next_sentence_label")})
    assert no_loss is None
    np.testing.assert_allclose(float(total.asnumpy()), float(mlm_only.asnumpy()) + float(nsp_only.asnumpy()),
                               rtol=1e-6)
    logits, labels = mlm.asnumpy().reshape(-1, VOCAB), batch["labels"].reshape(-1)
    kept = labels != -100
    log_probs = logits[kept] - np.log(np.exp(logits[kept]).sum(-1, keepdims=True))
    np.testing.assert_allclose(float(mlm_only.asnumpy()), -log_probs[np.arange(kept.sum()), labels[kept]].mean(),
                               rtol=1e-5)


def test_prompt_modes_freeze_the_heads():
    model = BertForPreTraining(build_backbone(tiny_config("bert", vocab_size=VOCAB)),
                               PTuningConfig(mode="prefix", pre_seq_len=2))
    trainable = [name for name, param in named_weights(model).items() if param.requires_grad]
    assert trainable == ["encoder.prefix_encoder.embedding.weight"]


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="hidden_act 'swish' is not supported"):
        activation("swish")
