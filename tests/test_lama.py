"""P-tuning v1 knowledge probing (ms_ptuning/lama): templates, the shared-vocabulary filter, parity of the
BERT and GPT-2 probes with the torch reference on both backends, the reference's training recipe as options of
the Trainer (Adam with L2 decay and ExponentialLR against torch, epoch choice and early stopping, exact resume),
and training on tests/fixtures/lama that beats the manual-template baseline while the LM stays bit-identical."""

import json
import os

import numpy as np
import pytest
from mindspore import Parameter, Tensor
from safetensors.numpy import load_file

from ms_ptuning.arguments import RunTrainingArguments
from ms_ptuning.backend import torch
from ms_ptuning.config import PTuningConfig
from ms_ptuning.lama.data import (Fact, SPLITS, VocabFilter, encode_facts, list_relations, load_qa_wikidata,
                                  load_relations, load_split, read_vocab_file)
from ms_ptuning.lama.metrics import precision_at_k
from ms_ptuning.lama.templates import QueryBuilder, parse_template
from ms_ptuning.lama.train import MODEL, LamaArgs, RunDir, load_probe, main, probe_relation
from ms_ptuning.parity import compare_many
from ms_ptuning.parity_training import compare_training
from ms_ptuning.training import EarlyStoppingCallback, Trainer
from ms_ptuning.training.optim import AdamW, build_optimizer
from ms_ptuning.weights import named_weights, to_numpy
import transformers
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
from tiny_backbones import tiny_config
from tiny_runs import tiny_classifier, tiny_dataset

DATA = os.path.join(os.path.dirname(__file__), "fixtures", "lama")
NAMES = ("Alba Bruno Carla Dario Elena Fabio Gina Hugo Irene Jonas Karla Luca Marta Nico Olga Pablo Rosa Sergio "
         "Tina Ugo Vera Walter Xenia Yuri Zoe Anton Bianca Cesar Diana Emil Flora Gustav Hanna Igor Julia Kurt "
         "Lena Marco Nina Oscar Paolo Quinn Ruth Simon Teo Umberto Viola Willy Yara Zeno").split()
# Saint-Denis, Timbuktu and Esperanto are left out on purpose; New York / Old Norse are two words;
# Vienna is a BERT word only (several byte-level tokens for GPT-2).
WORDS = NAMES + ("was born in used to communicate the of London Paris Rome Berlin English French Italian German "
                 "Dutch New York Old Norse").split()
BERT_ONLY_WORDS = ["Vienna"]
# Frozen LMs that prompts can steer: HF's default 0.02 init leaves a tiny LM's outputs almost uniform.
INIT_RANGE = 0.2


def write_bert_tokenizer(directory: str) -> transformers.BertTokenizerFast:
    path = os.path.join(directory, "vocab.txt")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", "##s"] + WORDS + BERT_ONLY_WORDS
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocab) + "\n")
    return transformers.BertTokenizerFast(vocab_file=path, do_lower_case=False)


def write_gpt2_tokenizer(directory: str) -> transformers.GPT2TokenizerFast:
    """Byte-level BPE: the 256 byte symbols plus, for each word, the merge chain Ġ+w1, Ġw1+w2, ... that
    makes " word" one token; any other word falls apart into bytes."""
    vocab, merges = {"<|endoftext|>": 0}, []
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    for word in WORDS:
        piece = "\u0120"
        for char in word:
            if piece + char not in vocab:
                merges.append(f"{piece} {char}")
                vocab[piece + char] = len(vocab)
            piece += char
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return transformers.GPT2TokenizerFast(vocab_file=os.path.join(directory, "vocab.json"),
                                          merges_file=os.path.join(directory, "merges.txt"))


def gpt2_config(vocab_size: int, **overrides):
    return transformers.GPT2Config(**{"vocab_size": vocab_size, "n_embd": 64, "n_layer": 2, "n_head": 4,
                                      "n_positions": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                                      **overrides})


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    directory = tmp_path_factory.mktemp("lama_tokenizers")
    return write_bert_tokenizer(str(directory)), write_gpt2_tokenizer(str(directory))


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tokenizers):
    """A tiny BertForMaskedLM and GPT2LMHeadModel saved as Hugging Face checkpoints (config.json,
    model.safetensors, tokenizer files): what `load_probe` reads for real models."""
    bert_tokenizer, gpt2_tokenizer = tokenizers
    dirs = {"bert": str(tmp_path_factory.mktemp("bert")), "gpt2": str(tmp_path_factory.mktemp("gpt2"))}
    torch.manual_seed(0)
    transformers.BertForMaskedLM(tiny_config("bert", vocab_size=len(bert_tokenizer), initializer_range=INIT_RANGE)
                                 ).save_pretrained(dirs["bert"])
    transformers.GPT2LMHeadModel(gpt2_config(len(gpt2_tokenizer), initializer_range=INIT_RANGE)
                                 ).save_pretrained(dirs["gpt2"])
    bert_tokenizer.save_pretrained(dirs["bert"])
    gpt2_tokenizer.save_pretrained(dirs["gpt2"])
    return dirs


# ---- templates ------------------------------------------------------------------------------------------

def test_bert_query_has_the_reference_layout(tokenizers):
    bert, _ = tokenizers
    unk, mask, cls, sep = bert.unk_token_id, bert.mask_token_id, bert.cls_token_id, bert.sep_token_id
    subject = bert.convert_tokens_to_ids(["New", "York"])
    query = QueryBuilder(bert, "masked", template="(3,3,3)").build("New York")
    assert query.input_ids == [cls, unk, unk, unk, mask, unk, unk, unk, *subject, unk, unk, unk, sep]
    assert query.prompt_index == [-1, 0, 1, 2, -1, 3, 4, 5, -1, -1, 6, 7, 8, -1]
    assert query.answer_position == 4
    dot = bert.convert_tokens_to_ids(["."])[0]
    closed = QueryBuilder(bert, "masked", template=(2, 1, 0)).build("Alba")
    assert closed.input_ids == [cls, unk, unk, mask, unk, bert.convert_tokens_to_ids("Alba"), dot, sep]
    assert closed.prompt_index == [-1, 0, 1, -1, 2, -1, -1, -1]


def test_gpt2_query_drops_the_last_block_and_answers_with_the_next_token(tokenizers):
    _, gpt2 = tokenizers
    unk = gpt2.unk_token_id
    builder = QueryBuilder(gpt2, "causal", template="(3,3,3)")
    assert builder.num_pseudo_tokens == 6
    query = builder.build("Alba")
    assert query.input_ids == [unk] * 3 + gpt2.convert_tokens_to_ids(["\u0120Alba"]) + [unk] * 3
    assert query.prompt_index == [0, 1, 2, -1, 3, 4, 5]
    assert query.answer_position == 6


def test_manual_templates(tokenizers):
    bert, gpt2 = tokenizers
    masked = QueryBuilder(bert, "masked", manual="[X] was born in [Y] .").build("Alba")
    assert bert.convert_ids_to_tokens(masked.input_ids) == ["[CLS]", "Alba", "was", "born", "in", "[MASK]", ".",
                                                            "[SEP]"]
    assert masked.answer_position == 5 and set(masked.prompt_index) == {-1}
    causal = QueryBuilder(gpt2, "causal", manual="[X] was born in [Y] .").build("Alba")
    assert gpt2.convert_ids_to_tokens(causal.input_ids) == ["\u0120Alba", "\u0120was", "\u0120born", "\u0120in"]
    assert causal.answer_position == 3


@pytest.mark.parametrize("text", ["(3,3)", "(3,-1,3)", "(a,3,3)", "3;3;3"])
def test_bad_templates_are_refused(text):
    with pytest.raises(ValueError, match="template must"):
        parse_template(text)


# ---- data and the vocabulary filter -----------------------------------------------------------------------

def all_facts(relation: str) -> list:
    return [fact for split in SPLITS for fact in load_split(DATA, relation, split)]


def test_fixture_layout():
    assert list_relations(DATA) == ["P19", "P1412"]
    assert load_relations(os.path.join(DATA, "relations.jsonl"))["P19"] == "[X] was born in [Y] ."
    assert len(all_facts("P19")) == 46 and len(all_facts("P1412")) == 45


def test_objects_that_are_not_one_token_are_dropped_and_counted(tokenizers):
    bert, gpt2 = tokenizers
    kept, report = VocabFilter({"bert": bert}).filter(all_facts("P19"))
    assert report.total == 46 and report.kept == len(kept) == 42
    assert dict(report.dropped) == {"multi-token in bert": 2, "unknown in bert": 2}
    assert report.examples["multi-token in bert"] == ["Saint-Denis", "New York"]
    assert report.examples["unknown in bert"] == ["Timbuktu"]
    assert "Vienna" in {fact.object for fact in kept}
    shared_kept, shared = VocabFilter({"bert": bert, "gpt2": gpt2}).filter(all_facts("P19"))
    assert shared.dropped["multi-token in gpt2"] == 2  # Vienna: one BERT token, five GPT-2 tokens
    assert "Vienna" not in {fact.object for fact in shared_kept}
    _, allowed = VocabFilter({"bert": bert}, allowed_words=["London", "Paris"]).filter(all_facts("P19"))
    assert allowed.kept == 30 and allowed.dropped["not in the shared vocabulary"] == 16
    assert report.summary().startswith("kept 42/46 facts; dropped 2 multi-token in bert (e.g. Saint-Denis, New York)")


SHARED_WORDS = [word for word in WORDS if word not in ("Rome", "German")]  # two objects left out


def write_reference_vocab(path, bert, gpt2) -> None:
    """The reference's 29k-vocab.json layout: {model name: [tokens in that model's spelling]}."""
    vocab = {"bert-base-cased": [bert.tokenize(word)[0] for word in SHARED_WORDS if len(bert.tokenize(word)) == 1],
             "gpt2-xl": [gpt2.tokenize(" " + word)[0] for word in SHARED_WORDS if len(gpt2.tokenize(" " + word)) == 1]}
    assert "\u0120London" in vocab["gpt2-xl"] and "London" in vocab["bert-base-cased"]
    path.write_text(json.dumps(vocab))


def test_reference_vocab_file_restricts_facts_and_candidates(tokenizers, tmp_path):
    bert, gpt2 = tokenizers
    path = tmp_path / "29k-vocab.json"
    write_reference_vocab(path, bert, gpt2)
    words, key = read_vocab_file(str(path), gpt2, str(tmp_path / "gpt2-medium"), "gpt2")  # GPT-2: gpt2-xl's list
    assert key == "gpt2-xl" and "London" in words and "Rome" not in words
    kept, report = VocabFilter({MODEL: gpt2}, words).filter(all_facts("P19"))
    # Rome ×5 and the objects no GPT-2 list holds (Vienna ×2, Timbuktu ×2, Saint-Denis, New York)
    assert dict(report.dropped) == {"not in the shared vocabulary": 11}
    assert {fact.object for fact in kept} == {"London", "Paris", "Berlin"}
    candidates = set(gpt2.convert_ids_to_tokens(VocabFilter({MODEL: gpt2}, words).candidate_ids(MODEL).tolist()))
    assert candidates == {"\u0120" + word for word in SHARED_WORDS if " " not in word} - {"\u0120Vienna"}
    with pytest.raises(ValueError, match=r"no token list for .*bert-large-cased \(model type bert\); choose one "
                                         r"of bert-base-cased, gpt2-xl with --vocab_key"):
        read_vocab_file(str(path), bert, str(tmp_path / "bert-large-cased"), "bert")
    assert read_vocab_file(str(path), bert, str(tmp_path / "bert-base-cased"), "bert")[1] == "bert-base-cased"
    with pytest.raises(ValueError, match="none of the .* tokens of 'gpt2-xl' is in"):
        read_vocab_file(str(path), bert, str(tmp_path / "bert"), "bert", key="gpt2-xl")
    path.write_text(json.dumps(["London", "Paris"]))
    assert read_vocab_file(str(path), bert, str(tmp_path), "bert") == (["London", "Paris"], None)


def test_unfiltered_objects_are_never_scored(tokenizers):
    bert, _ = tokenizers
    builder = QueryBuilder(bert, "masked", template="(1,1,1)")
    with pytest.raises(ValueError, match="'Saint-Denis' is multi-token"):
        encode_facts([Fact("Alba", "Saint-Denis", "P19", "facts.jsonl:3")], builder, bert)
    candidates = VocabFilter({"bert": bert}, allowed_words=["London", "Paris"]).candidate_ids("bert")
    assert sorted(bert.convert_ids_to_tokens(candidates.tolist())) == ["London", "Paris"]
    rome = bert.convert_tokens_to_ids("Rome")
    with pytest.raises(ValueError, match=f"object ids \\[{rome}\\] are not among the candidate answers"):
        precision_at_k(np.zeros((1, len(bert))), np.array([rome]), candidates)


def test_precision_at_k_ranks_only_the_candidates():
    logits = np.array([[5.0, 1.0, 3.0, 2.0, 9.0], [0.0, 4.0, 3.0, 2.0, 1.0]])
    candidates = np.array([3, 2, 1])  # token 0 and 4 score high but are no candidates
    assert precision_at_k(logits, np.array([2, 2]), candidates, ks=(1, 2)) == {"P@1": 0.5, "P@2": 1.0}


def test_encoded_dataset_pads_and_marks_pseudo_tokens(tokenizers):
    _, gpt2 = tokenizers
    facts = [Fact("Alba", "London", "P19", "a:1"), Fact("New York", "Paris", "P19", "a:2")]
    dataset = encode_facts(facts, QueryBuilder(gpt2, "causal", template=(1, 1, 0)), gpt2)
    np.testing.assert_array_equal(dataset.columns["attention_mask"], [[1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(dataset.columns["prompt_index"], [[0, -1, 1, -1], [0, -1, -1, 1]])
    np.testing.assert_array_equal(dataset.columns["answer_position"], [2, 3])
    assert gpt2.convert_ids_to_tokens(dataset.columns["labels"].tolist()) == ["\u0120London", "\u0120Paris"]


def test_bad_fact_files_name_file_line_and_field(tmp_path):
    relation_dir = tmp_path / "P19"
    relation_dir.mkdir()
    path = relation_dir / "train.jsonl"
    path.write_text('{"sub_label": "Alba", "obj_label": "London"}\n{"sub_label": "Bruno"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2: field 'obj_label' must be a non-empty string"):
        load_split(str(tmp_path), "P19", "train")
    path.write_text('{"sub_label": "Alba", "obj_label": "London", "predicate_id": "P20"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:1: fact of relation 'P20' in the file of relation 'P19'"):
        load_split(str(tmp_path), "P19", "train")
    path.write_text('{"sub_label": "Alba",\n')
    with pytest.raises(ValueError, match=r"train.jsonl:1: not valid JSON"):
        load_split(str(tmp_path), "P19", "train")
    with pytest.raises(FileNotFoundError, match="no facts for relation 'P36'"):
        load_split(str(tmp_path), "P36", "train")


def test_big_bench_qa_wikidata_adapter(tmp_path):
    task = {"examples": [{"input": "The language of A Confederacy of Dunces is", "target": ["English", "en"]},
                         {"input": "Niue is a country in", "target": "Oceania"}]}
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task))
    facts = load_qa_wikidata(str(path))
    assert [(f.subject, f.object, f.relation) for f in facts] == [
        ("The language of A Confederacy of Dunces is", "English", "qa_wikidata"),
        ("Niue is a country in", "Oceania", "qa_wikidata")]
    path.write_text(json.dumps({"examples": [{"input": "x"}]}))
    with pytest.raises(ValueError, match=r"examples\[0\]: field 'target'"):
        load_qa_wikidata(str(path))


# ---- parity with the torch reference ---------------------------------------------------------------------

PARITY_FACTS = [Fact("Alba", "London", "P19", "p:1"), Fact("Saint-Denis", "Paris", "P19", "p:2"),
                Fact("New York", "Rome", "P19", "p:3")]


@pytest.fixture(scope="module")
def lama_parity(tokenizers):
    """{kind: `compare_many`'s numbers on both backends} for the BERT and GPT-2 probes (padded rows of
    different lengths), with one torch reference process for both (its start-up dominates)."""
    bert, gpt2 = tokenizers
    kinds = {"bert": (bert, tiny_config("bert", vocab_size=len(bert)), "masked"),
             "gpt2": (gpt2, gpt2_config(len(gpt2)), "causal")}
    cases = []
    for tokenizer, config, builder_kind in kinds.values():
        builder = QueryBuilder(tokenizer, builder_kind, template="(3,3,3)")
        batch = encode_facts(PARITY_FACTS, builder, tokenizer).columns
        assert batch["attention_mask"].min() == 0  # rows of different lengths
        ptuning = PTuningConfig(mode="prompt", pre_seq_len=builder.num_pseudo_tokens, prompt_encoder_type="lstm")
        cases.append(("lama", config, ptuning, batch))
    return dict(zip(kinds, compare_many(cases, ("eager", "graph"))))


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_probe_matches_the_torch_reference_on_both_backends(lama_parity, kind):
    """Logits at the answer position and the LSTM prompt encoder's gradients, padded rows included: the eager
    (mindnlp) probe and the graph one (native Cells, forward and backward compiled as one GRAPH_MODE graph,
    the LSTM inside it) against the torch reference, and against each other, on the same weights."""
    for backend in ("eager", "graph"):
        diffs = lama_parity[kind][backend]
        print(f"lama {kind} {backend} parity:", {k: v for k, v in diffs.items() if k != "grad_rel"})
        assert diffs["logits_max_abs"] <= 1e-5
        assert diffs["grad_max_rel"] <= 1e-4, diffs["grad_worst_param"]
        assert diffs["num_trainable_tensors"] == 21  # the prompt encoder only: embedding, 16 LSTM, 4 MLP
    diffs = lama_parity[kind]["graph_vs_eager"]
    print(f"lama {kind} graph vs eager: logits {diffs['logits_max_abs']:.1e}, gradients {diffs['grad_max_rel']:.1e}")
    assert diffs["logits_max_abs"] <= 1e-5 and diffs["grad_max_rel"] <= 1e-4


# ---- training on the fixture ----------------------------------------------------------------------------

def test_adam_l2_step_is_torch_adam_with_l2_weight_decay():
    """optim adam_l2 (torch.optim.Adam(weight_decay=wd)) written out: the decay joins the gradient before the
    moments, on every parameter, biases included; the decoupled AdamW step differs."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=4).astype(np.float32)
    params = {name: Parameter(Tensor(start.copy()), name=name) for name in ("w", "lstm.bias_ih_l0")}
    optimizer = build_optimizer(params, RunTrainingArguments(output_dir="unused", optim="adam_l2", learning_rate=0.1,
                                                             weight_decay=0.5))
    decoupled = AdamW({"w": Parameter(Tensor(start.copy()), name="w")}, lr=0.1, weight_decay=0.5)
    expected, m, v = start.astype(np.float64), 0.0, 0.0
    for step, lr in enumerate([0.1, 0.098, 0.09604], 1):
        grad = rng.normal(size=4).astype(np.float32)
        optimizer.step({name: Tensor(grad) for name in params}, lr)
        decoupled.step({"w": Tensor(grad)}, lr)
        g = grad + 0.5 * expected
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        expected = expected - lr / (1 - 0.9 ** step) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** step) + 1e-8)
    for param in params.values():
        np.testing.assert_allclose(param.asnumpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(decoupled.params["w"].asnumpy() - expected).max() > 1e-2


def test_lama_recipe_follows_torch_adam_and_exponential_lr_on_both_backends(tokenizers):
    """The reference's LAMA optimizer as Trainer options (optim adam_l2, lr_decay_per_epoch, no clipping)
    against torch.optim.Adam(weight_decay) + ExponentialLR stepped per epoch in the torch process: 10 epochs
    of one batch, the BERT probe's prompt encoder (the MLP one: it compiles faster than the LSTM, whose parity
    is checked above) trained from the same start on the eager and the graph backend. The weight decay is
    large enough that AdamW's decoupled decay ends 2.1e-2 away (measured), not within 1e-4."""
    bert, _ = tokenizers
    kept, _ = VocabFilter({MODEL: bert}).filter(load_split(DATA, "P19", "train"))
    builder = QueryBuilder(bert, "masked", template="(3,3,3)")
    columns = encode_facts(kept[:8], builder, bert).columns  # one batch: every step sees the same examples
    settings = dict(optim="adam_l2", learning_rate=1e-2, weight_decay=0.1, lr_decay_per_epoch=0.7, max_grad_norm=0.0,
                    per_device_train_batch_size=8, gradient_accumulation_steps=1, adam_beta1=0.9, adam_beta2=0.999,
                    adam_epsilon=1e-8, seed=7)
    ptuning = PTuningConfig(mode="prompt", pre_seq_len=builder.num_pseudo_tokens, prompt_encoder_type="mlp")
    outcomes = compare_training("lama", tiny_config("bert", vocab_size=len(bert)), ptuning, columns, 10, settings,
                                ("eager", "graph"))
    for backend, result in outcomes.items():
        print(f"LAMA recipe, {backend}:", {k: v for k, v in result.items() if k not in ("tensor_rel", "tensor_max")})
        assert result["steps"] == 10 and result["last_loss"] < result["first_loss"]
        assert result["loss_max_rel"] <= 1e-4
        assert result["weights_rel"] <= 1e-4


class ScriptedScores:
    """compute_metrics giving the dev evaluations a scripted P@1 (the test split, 3 rows, gets -1)."""

    def __init__(self, scores: list):
        self.scores = iter(scores)

    def __call__(self, prediction) -> dict:
        return {"P@1": next(self.scores) if len(prediction.label_ids) == 5 else -1.0}


@pytest.mark.parametrize("ties_are_improvements", [True, False])
def test_the_reference_choice_of_epoch_through_the_trainer(tmp_path, ties_are_improvements):
    """eval_on_start: epoch 0 is evaluated but never the best, even scoring highest. With ties_are_improvements
    (the reference's >=) a tie moves the best to the later epoch and restarts EarlyStoppingCallback's patience;
    without it (Hugging Face's rule) the earlier epoch stays best and the tie counts against the patience. The
    test split is scored at every new best."""
    scores = [0.9, 0.1, 0.3, 0.3, 0.2, 0.1, 0.5, 0.5]  # dev P@1 after epochs 0 (untrained), 1, 2, ...
    args = RunTrainingArguments(output_dir=str(tmp_path), num_train_epochs=10, per_device_train_batch_size=4,
                                learning_rate=1e-3, eval_on_start=True, metric_for_best_model="P@1",
                                greater_is_better=True, load_best_model_at_end=True, save_strategy="epoch",
                                ties_are_improvements=ties_are_improvements, disable_tqdm=True)
    trainer = Trainer(tiny_classifier(), args, train_dataset=tiny_dataset(size=4),
                      eval_dataset=tiny_dataset(seed=1, size=5), test_datasets={"test": tiny_dataset(seed=2, size=3)},
                      compute_metrics=ScriptedScores(scores), callbacks=[EarlyStoppingCallback(early_stopping_patience=2)])
    trainer.train()
    evaluations = [(record["step"], record["eval_P@1"]) for record in trainer.state.log_history if "eval_P@1" in record]
    tests = [record["step"] for record in trainer.state.log_history if "test_P@1" in record]
    best = trainer.best_evaluation
    if ties_are_improvements:  # epoch 3 ties epoch 2: the best moves to it; epochs 4 and 5 exhaust the patience
        assert evaluations == [(0, 0.9), (1, 0.1), (2, 0.3), (3, 0.3), (4, 0.2), (5, 0.1)]
        assert (best["epoch"], best["value"], tests) == (3.0, 0.3, [1, 2, 3])
    else:  # the tie counts as no improvement: epochs 3 and 4 exhaust the patience, epoch 2 stays best
        assert evaluations == [(0, 0.9), (1, 0.1), (2, 0.3), (3, 0.3), (4, 0.2)]
        assert (best["epoch"], best["value"], tests) == (2.0, 0.3, [1, 2])


def test_hugging_faces_early_stopping_is_refused_where_ties_are_improvements(tmp_path):
    args = RunTrainingArguments(output_dir=str(tmp_path), ties_are_improvements=True, metric_for_best_model="P@1")
    with pytest.raises(ValueError, match="use ms_ptuning.training.EarlyStoppingCallback"):
        Trainer(tiny_classifier(), args, train_dataset=tiny_dataset(size=8),
                callbacks=[transformers.EarlyStoppingCallback(early_stopping_patience=2)])


# Fast settings for 2 busy CPU cores: a learning rate for a handful of epochs instead of the reference's 1e-5
# for up to 100 (the LSTM prompt encoder, compiled inside the graph backend's train step).
FAST = dict(lr=0.03, seed=1, early_stop=4)
P19_MANUAL = "[X] was born in [Y] ."


def test_ptuning_beats_the_manual_template_and_leaves_the_lm_untouched_on_graph(tokenizers, model_dirs, tmp_path):
    bert, _ = tokenizers
    args = LamaArgs(max_epochs=5, backend="graph", **FAST)
    model, backend = load_probe(model_dirs["bert"], args)
    assert backend.is_graph and type(model.backbone).__name__ == "NativeBert"
    frozen = {name: value for name, value in to_numpy(named_weights(model)).items() if "prompt_encoder" not in name}
    prompts_before = to_numpy({n: p for n, p in named_weights(model).items() if "prompt_encoder" in n})
    facts = {split: load_split(DATA, "P19", split) for split in SPLITS}
    result = probe_relation(model, bert, VocabFilter({MODEL: bert}), "P19", P19_MANUAL, facts, args,
                            RunDir(str(tmp_path / "P19")), backend.steps)
    print("P19 BERT, graph:", {key: result[key] for key in ("manual", "ptuning", "best_epoch", "epochs_run")})
    assert result["ptuning"]["P@1"] > result["manual"]["P@1"]
    assert result["best_epoch"] > 0 and "epoch0_dev_P@1" in result  # epoch 0 is evaluated, never chosen
    after = to_numpy(named_weights(model))
    assert all(np.array_equal(after[name], value) for name, value in frozen.items())
    assert any(not np.array_equal(after[name], value) for name, value in prompts_before.items())
    assert result["facts"]["test"] == {"total": 10, "kept": 9, "dropped": {"unknown in model": 1}}
    assert result["facts_all"]["dropped"] == {"multi-token in model": 2, "unknown in model": 2}


class CrashAfterSave(transformers.TrainerCallback):
    """Stands in for a killed process: raises once the checkpoint of `step` is complete."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"crash after checkpoint-{self.step}")


def test_a_crashed_relation_run_resumes_exactly(tokenizers, model_dirs, tmp_path):
    """Killed after epoch 1 and resumed from its checkpoint (eager backend: no compilation), the run ends
    with the results, metrics log and best prompts of an uninterrupted run: the untrained epoch 0 is not
    evaluated again, the early-stopping patience, the best epoch and its test scores carry over."""
    bert, _ = tokenizers
    args = LamaArgs(max_epochs=2, backend="eager", prompt_encoder_type="mlp", **{**FAST, "early_stop": 1})
    facts = {split: load_split(DATA, "P19", split) for split in SPLITS}

    def run(directory: str, resume: bool = False, callbacks=()):
        model, backend = load_probe(model_dirs["bert"], args)
        return probe_relation(model, bert, VocabFilter({MODEL: bert}), "P19", P19_MANUAL, facts, args,
                              RunDir(directory, resume=resume), backend.steps, callbacks)

    whole, broken = str(tmp_path / "whole"), str(tmp_path / "broken")
    expected = run(whole)
    with pytest.raises(KeyboardInterrupt):
        run(broken, callbacks=[CrashAfterSave(step=3)])  # 25 facts in batches of 8: 3 steps an epoch
    assert run(broken, resume=True) == expected
    assert metrics_log(broken) == metrics_log(whole)
    whole_best, broken_best = (load_file(os.path.join(d, "best_model", "adapter.safetensors")) for d in (whole, broken))
    assert whole_best.keys() == broken_best.keys()
    assert all(np.array_equal(broken_best[name], value) for name, value in whole_best.items())


def metrics_log(directory: str) -> list:
    """metrics.jsonl without wall-clock figures."""
    with open(os.path.join(directory, "metrics.jsonl")) as handle:
        return [{k: v for k, v in json.loads(line).items() if not k.endswith(("_runtime", "_per_second"))}
                for line in handle]


def test_command_line_probes_gpt2_on_graph_and_prints_the_table(model_dirs, tmp_path, capsys):
    out = str(tmp_path / "results")
    argv = ["--model_dir", model_dirs["gpt2"], "--data_dir", DATA, "--relation", "P1412", "--output_dir", out,
            "--max_epochs", "5", "--backend", "graph"] + [f"--{name}={value}" for name, value in FAST.items()]
    assert main(argv) == 0
    with open(os.path.join(out, "P1412.json")) as handle:
        result = json.load(handle)
    with capsys.disabled():
        print("P1412 GPT-2, graph:", {key: result[key] for key in ("manual", "ptuning", "best_epoch", "epochs_run")})
    assert result["backend"] == "graph" and result["ptuning"]["P@1"] > result["manual"]["P@1"]
    assert result["facts"]["test"]["dropped"] == {"multi-token in model": 1}
    assert os.path.isfile(os.path.join(out, "P1412", "best_model", "adapter.safetensors"))
    capsys.readouterr()
    assert main(["--summarize", out]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| relation | test facts kept/total | dropped | manual P@1 | P-tuning P@1")
    assert table[2].startswith(f"| P1412 | 9/10 | 4 | {result['manual']['P@1']:.3f} | {result['ptuning']['P@1']:.3f}")
    assert main(argv) == 2  # a second run never replaces the first: refused with a message, no traceback
    refusal = capsys.readouterr().err
    assert "ms_ptuning.lama.train: error:" in refusal and "already holds a run" in refusal


def test_command_line_ranks_over_the_reference_shared_vocabulary(tokenizers, model_dirs, tmp_path):
    bert, gpt2 = tokenizers
    vocab_file = tmp_path / "29k-vocab.json"
    write_reference_vocab(vocab_file, bert, gpt2)
    out = str(tmp_path / "results")
    argv = ["--model_dir", model_dirs["bert"], "--data_dir", DATA, "--relation", "P19", "--output_dir", out,
            "--max_epochs", "1", "--vocab_file", str(vocab_file), "--vocab_key", "bert-base-cased", "--backend",
            "eager"]
    assert main(argv + [f"--{name}={value}" for name, value in FAST.items()]) == 0
    with open(os.path.join(out, "P19.json")) as handle:
        result = json.load(handle)
    assert result["vocabulary"] == {"vocab_file": str(vocab_file), "vocab_key": "bert-base-cased",
                                    "shared_model_dirs": []}
    assert result["backend"] == "eager"
    assert result["num_candidates"] == len(json.loads(vocab_file.read_text())["bert-base-cased"])
    # test facts: Rome, Timbuktu and Vienna are outside the shared list; P@1 counts the 7 left
    assert result["facts"]["test"] == {"total": 10, "kept": 7, "dropped": {"not in the shared vocabulary": 3}}
    assert result["ptuning"]["P@1"] * 7 == pytest.approx(round(result["ptuning"]["P@1"] * 7))
    assert result["best_epoch"] == 1 and result["epochs_run"] == 1
