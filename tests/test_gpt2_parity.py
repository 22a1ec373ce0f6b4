"""GPT-2 LM on MindSpore vs the torch reference (fp32, tiny config) in finetune / prefix / prompt mode, on both
backends (eager: the mindnlp GPT-2 op by op; graph: the native GPT-2, forward and backward compiled as one
graph, decoding on the static cache): logits, loss and trainable gradients, greedy decoding token for token,
the beam search against an exhaustive search and graph against eager. 50 training steps, graph against eager
and both against torch: tests/test_training_parity.py."""

import numpy as np
import pytest

from ms_ptuning.backend import torch
import transformers

from ms_ptuning.config import PTuningConfig
from ms_ptuning.generation import GenerationConfig, banned_tokens, generate
from transformers.generation.logits_process import _calc_banned_ngram_tokens
from ms_ptuning.parity import (as_reference, compiled_forward_and_grads, differences, forward_and_grads,
                               load_case, native_twin, output_differences, run_reference, write_case)

VOCAB, EOS, MAX_NEW = 97, 5, 10
# initializer_range above GPT-2's 0.02, so that a random model's greedy decode does more than repeat the
# last token (with tied embeddings that is all a 0.02 model does) and also stops early now and then
CONFIG = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.08)
MODES = {
    "finetune": PTuningConfig(mode="finetune"),
    "prefix": PTuningConfig(mode="prefix", pre_seq_len=4, prefix_dropout=0.0),
    "prefix_projection": PTuningConfig(mode="prefix", pre_seq_len=4, prefix_dropout=0.0, prefix_projection=True,
                                       prefix_hidden_size=32),
    "prompt": PTuningConfig(mode="prompt", pre_seq_len=4, prompt_encoder_type="lstm"),
}
PROMPTS = [[5, 17, 23, 42, 8], [60, 3], [71, 29, 33, 14, 90, 52, 12, 66], [44]]


def batch():
    """Right-padded rows; row 0 learns only its last 5 tokens (summary-only loss), padding is -100."""
    rng = np.random.default_rng(0)
    input_ids = rng.integers(1, VOCAB, (3, 12)).astype(np.int32)
    attention_mask = np.ones((3, 12), np.int32)
    attention_mask[1, 9:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = 0
    labels = np.where(attention_mask == 1, input_ids, -100)
    labels[0, :7] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """name → (model holding the reference's weights, reference outputs, reference greedy decode); one
    torch process serves every mode."""
    root = tmp_path_factory.mktemp("gpt2_parity")
    workdirs = {name: root / name for name in MODES}
    generate_spec = {"prompts": PROMPTS, "max_new_tokens": MAX_NEW, "eos_token_id": EOS}
    for name, workdir in workdirs.items():
        workdir.mkdir()
        write_case(str(workdir), "causal_lm", CONFIG, MODES[name], batch(), seed=0, generate=generate_spec)
    run_reference(*map(str, workdirs.values()))
    return {name: load_case(str(workdir), "causal_lm", CONFIG, MODES[name], generated=True)
            for name, workdir in workdirs.items()}


@pytest.fixture(scope="module")
def twins(cases):
    """name → the same head over the native GPT-2 (the graph backend) holding the eager model's weights."""
    return {name: native_twin(model, "causal_lm", CONFIG, MODES[name]) for name, (model, _, _) in cases.items()}


def on_backend(cases, twins, mode: str, backend: str):
    return cases[mode][0] if backend == "eager" else twins[mode]


def check_outputs(result: dict, mode: str, label: str) -> None:
    print(label, mode, {k: v for k, v in result.items() if k != "grad_rel"})
    assert result["logits_max_abs"] <= 1e-5
    assert result["loss_abs"] <= 1e-5
    assert result["grad_max_rel"] <= 1e-4, result["grad_worst_param"]
    assert result["num_trainable_tensors"] == {"finetune": 28, "prefix": 1, "prefix_projection": 5, "prompt": 21}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_logits_loss_and_gradients_match_the_reference(cases, mode):
    model, reference, _ = cases[mode]
    check_outputs(differences(model, batch(), reference), mode, "eager vs torch")


@pytest.mark.parametrize("mode", MODES)
def test_graph_backend_matches_the_reference_and_the_eager_backend(cases, twins, mode):
    model, reference, _ = cases[mode]
    graph = compiled_forward_and_grads(twins[mode], batch())
    check_outputs(output_differences(graph, reference), mode, "graph vs torch")
    check_outputs(output_differences(graph, as_reference(forward_and_grads(model, batch()))), mode, "graph vs eager")


def test_graph_backend_runs_on_the_native_gpt2(twins):
    assert {type(twin.backbone).__name__ for twin in twins.values()} == {"NativeGPT2"}


@pytest.mark.parametrize("backend", ["eager", "graph"])
@pytest.mark.parametrize("mode", MODES)
def test_batched_left_padded_greedy_decode_is_token_identical_to_the_reference(cases, twins, mode, backend):
    reference = cases[mode][2]
    model = on_backend(cases, twins, mode, backend)
    ours = generate(model, PROMPTS, GenerationConfig(max_new_tokens=MAX_NEW, eos_token_id=EOS, batch_size=4))
    assert ours == reference
    assert len({token for tokens in reference for token in tokens}) >= 3  # not a trivially constant decode


@pytest.mark.parametrize("mode", ["prefix", "prompt"])
def test_graph_beam_search_is_token_identical_to_eager(cases, twins, mode):
    """Batched beam search (a short last batch, beams reordered in the compiled step, n-gram bans, a
    minimum length) gives the eager backend's tokens on the static cache."""
    config = GenerationConfig(max_new_tokens=6, min_new_tokens=2, num_beams=3, no_repeat_ngram_size=2,
                              eos_token_id=EOS, batch_size=3)
    prompts = PROMPTS + REPEATING
    eager = generate(cases[mode][0], prompts, config)
    assert generate(twins[mode], prompts, config) == eager
    assert len({tuple(tokens) for tokens in eager}) == len(prompts)


@pytest.mark.parametrize("backend", ["eager", "graph"])
def test_prompts_running_past_the_positions_are_refused(cases, twins, backend):
    model = on_backend(cases, twins, "prefix", backend)  # 4 virtual tokens, n_positions 64
    with pytest.raises(ValueError, match="need 65 positions, the model embeds 64"):
        generate(model, [[7] * 52, [8]], GenerationConfig(max_new_tokens=10, eos_token_id=EOS))
    assert len(generate(model, [[7] * 51], GenerationConfig(max_new_tokens=10, eos_token_id=EOS))) == 1


def test_reference_decodes_stop_at_the_stop_token(cases):
    stopped = {mode: [len(tokens) < MAX_NEW for tokens in generations] for mode, (_, _, generations) in cases.items()}
    assert sum(map(any, stopped.values())) >= 3, stopped


def test_one_by_one_greedy_decode_with_prefix_matches_the_reference(cases):
    model, _, reference = cases["prefix"]
    config = GenerationConfig(max_new_tokens=MAX_NEW, eos_token_id=EOS, batch_size=1)
    assert generate(model, PROMPTS, config) == reference


def test_beam_search_batched_equals_one_by_one_and_never_repeats_a_bigram(cases):
    model, _, _ = cases["prompt"]
    config = dict(max_new_tokens=6, num_beams=3, no_repeat_ngram_size=2, eos_token_id=EOS)
    batched = generate(model, PROMPTS, GenerationConfig(**config, batch_size=4))
    assert batched == generate(model, PROMPTS, GenerationConfig(**config, batch_size=1))
    for prompt, tokens in zip(PROMPTS, batched):
        assert len(tokens) <= 6 and EOS not in tokens
        assert not repeated_bigrams(prompt, tokens)


def repeated_bigrams(prompt, tokens) -> list:
    """Bigrams ending in a generated token that already occurred earlier in prompt + tokens."""
    sequence = prompt + tokens
    return [pair for k in range(len(prompt), len(sequence))
            if (pair := (sequence[k - 1], sequence[k])) in set(zip(sequence[:k - 1], sequence[1:k]))]


def test_min_new_tokens_holds_back_the_stop_token(cases):
    model, _, reference = cases["prefix_projection"]
    assert any(len(tokens) < MAX_NEW for tokens in reference)
    config = GenerationConfig(max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW, eos_token_id=EOS)
    forced = generate(model, PROMPTS, config)
    assert [len(tokens) for tokens in forced] == [MAX_NEW] * len(PROMPTS)


def test_banned_tokens_complete_repeated_ngrams_only():
    assert banned_tokens([1, 2, 3, 1], 2) == {2}
    assert banned_tokens([1, 2, 1, 3, 1], 2) == {2, 3}
    assert banned_tokens([1, 2, 3, 1, 2], 3) == {3}
    assert banned_tokens([4, 5], 1) == {4, 5} and banned_tokens([4, 5], 0) == set()
    assert banned_tokens([4, 5], 3) == set() and banned_tokens([], 2) == set()


def hf_banned(history, n):
    """Hugging Face generate's own rule (NoRepeatNGramLogitsProcessor's helper) for one sequence."""
    return set(_calc_banned_ngram_tokens(n, np.asarray([history]), 1, len(history))[0])


def test_banned_tokens_are_hugging_faces():
    rng = np.random.default_rng(0)
    for _ in range(500):
        history = rng.integers(0, 4, int(rng.integers(0, 25))).tolist()  # 4 symbols: repeats everywhere
        n = int(rng.integers(1, 5))
        assert banned_tokens(history, n) == hf_banned(history, n), (history, n)


def plain_decode(model, prompt, max_new, n, count_prompt=True):
    """Greedy without cache or padding, Hugging Face's n-gram ban over prompt + output (or output only)."""
    ids = list(prompt)
    for _ in range(max_new):
        _, logits = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([[1] * len(ids)]))
        scores = logits.asnumpy()[0, -1].astype(np.float64)
        history = ids if count_prompt else ids[len(prompt):]
        scores[list(hf_banned(history, n))] = -np.inf
        token = int(scores.argmax())
        if token == EOS:
            break
        ids.append(token)
    return ids[len(prompt):]


# prompts holding the doubled tokens this model likes to generate (92 92, 88 88, ...): bans from the
# prompt have something to bite on
REPEATING = [[17, 23, 92, 92, 42], [60, 3, 88, 88, 60], [29, 33, 72, 72, 14, 90], [31, 31, 79, 79, 5]]


def test_no_repeat_ngram_size_counts_the_prompt_as_hugging_face(cases):
    model, _, _ = cases["prefix"]
    model.set_train(False)
    prompts = PROMPTS + REPEATING
    config = GenerationConfig(max_new_tokens=MAX_NEW, eos_token_id=EOS, no_repeat_ngram_size=2, batch_size=4)
    expected = [plain_decode(model, prompt, MAX_NEW, 2) for prompt in prompts]
    assert generate(model, prompts, config) == expected  # batched, left-padded, cached
    for prompt, tokens in zip(prompts, expected):
        assert not repeated_bigrams(prompt, tokens)
    # the prompt's n-grams change some decode (the repeating prompts first: they are the likely ones)
    assert any(plain_decode(model, prompt, MAX_NEW, 2, count_prompt=False) != tokens
               for prompt, tokens in reversed(list(zip(prompts, expected))))


def exhaustive_best_two_tokens(model, prompt, ngram_size=0):
    """The best-scoring (sum of log-probs / length) output of at most 2 tokens, by scoring every one of
    them with full forward passes (no cache, no search); with `ngram_size`, outputs that repeat an
    n-gram of prompt + output are excluded (Hugging Face's rule)."""
    rows = np.array([prompt + [token] for token in range(VOCAB)], dtype=np.int32)  # (V, T+1)
    _, logits = model(input_ids=torch.tensor(rows), attention_mask=torch.tensor(np.ones_like(rows)))
    logits = logits.asnumpy().astype(np.float64)
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    first, second = log_probs[0, -2], log_probs[:, -1]  # (V,) after the prompt, (V, V) after each first token

    def allowed(history, token):
        return not ngram_size or token not in hf_banned(history, ngram_size)

    scores = {(): first[EOS]} if allowed(prompt, EOS) else {}
    for t1 in range(VOCAB):
        if t1 == EOS or not allowed(prompt, t1):
            continue
        for t2 in range(VOCAB):
            if allowed(prompt + [t1], t2):
                scores[(t1,) if t2 == EOS else (t1, t2)] = (first[t1] + second[t1, t2]) / 2
    return list(max(scores, key=scores.get))


@pytest.mark.parametrize("backend", ["eager", "graph"])
def test_full_width_beam_search_with_prefix_is_an_exact_search(cases, twins, backend):
    model, _, _ = cases["prefix"]
    model.set_train(False)
    prompts = [PROMPTS[0], PROMPTS[1]]  # batched: left padding and cache reordering with the prefix
    found = generate(on_backend(cases, twins, "prefix", backend), prompts,
                     GenerationConfig(max_new_tokens=2, num_beams=VOCAB, eos_token_id=EOS))
    assert found == [exhaustive_best_two_tokens(model, prompt) for prompt in prompts]


def test_full_width_beam_search_bans_the_prompts_ngrams(cases):
    """Beam search over every token for 2 steps is an exact search; with no_repeat_ngram_size it must find
    the best output among those that repeat no n-gram of prompt + output."""
    model, _, _ = cases["prefix"]
    model.set_train(False)
    free = [exhaustive_best_two_tokens(model, prompt) for prompt in REPEATING]
    for n in (1, 2):
        config = GenerationConfig(max_new_tokens=2, num_beams=VOCAB, eos_token_id=EOS, no_repeat_ngram_size=n)
        found = generate(model, REPEATING, config)
        assert found == [exhaustive_best_two_tokens(model, prompt, ngram_size=n) for prompt in REPEATING]
        assert found != free  # the bans bite
