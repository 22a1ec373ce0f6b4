"""Greedy and beam-search decoding for `CausalLM`, batched with left padding and a key/value cache.

The prefix (P-tuning v2) or the prompts (P-tuning v1) enter once, in the first forward pass over the
prompt tokens, and then live in the cache for every later step. Search bookkeeping is numpy; only the
model runs on MindSpore: op by op with a growing cache over a mindnlp GPT-2 (`CachedDecoder`, the eager
backend), or as two compiled graphs against a fixed-size cache over the native GPT-2 (`static_decoding`,
the graph backend; token for token the same search). Generated ids exclude the prompt and the stop token.

`no_repeat_ngram_size` bans any token that would repeat an n-gram of the whole sequence so far, prompt
included, as Hugging Face's `generate` counts them (its left padding excepted: a batch decodes as each
prompt alone would). Ties: greedy takes the lowest token id among equal scores (numpy's and torch's
argmax); beam search ranks equal candidates by beam, then token id (a stable sort).
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from .backend import torch
from .static_decoding import static_decoder_factory, uses_static_cache


@dataclass
class GenerationConfig:
    max_new_tokens: int = 50
    min_new_tokens: int = 0  # the stop token is suppressed before this many tokens (a summary is never empty)
    num_beams: int = 1
    no_repeat_ngram_size: int = 0  # over prompt + generated tokens, as HF generate
    eos_token_id: int = 102  # [SEP] in the BERT vocabulary
    pad_token_id: int = 0
    length_penalty: float = 1.0  # beam scores are divided by (generated length) ** length_penalty
    batch_size: int = 8

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.num_beams < 1 or self.batch_size < 1:
            raise ValueError(f"max_new_tokens, num_beams and batch_size must be >= 1, got {self}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}")


def generate(model, prompts, config: GenerationConfig) -> list:
    """Token ids generated after each prompt (a list of id lists), in the order of `prompts`."""
    if any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("every prompt needs at least one token")
    check_positions(model, prompts, config)
    model.set_train(False)
    if uses_static_cache(model):
        new_decoder = static_decoder_factory(model, prompts, config)
    else:
        new_decoder = partial(CachedDecoder, model, pad_token_id=config.pad_token_id)
    search = _greedy if config.num_beams == 1 else _beam_search
    outputs = []
    for start in range(0, len(prompts), config.batch_size):
        outputs.extend(search(new_decoder, [list(p) for p in prompts[start:start + config.batch_size]], config))
    return outputs


def check_positions(model, prompts, config: GenerationConfig) -> None:
    """Refuse prompts whose tokens, with the virtual ones in front and max_new_tokens after, would run
    past the positions GPT-2 embeds (n_positions)."""
    limit = getattr(model.backbone.config, "n_positions", None)
    needed = model.config.num_virtual_tokens + max(len(prompt) for prompt in prompts) + config.max_new_tokens - 1
    if limit is not None and needed > limit:
        raise ValueError(f"a prompt of {max(len(p) for p in prompts)} tokens + {config.max_new_tokens - 1} generated "
                         f"+ {model.config.num_virtual_tokens} virtual tokens need {needed} positions, the model "
                         f"embeds {limit}: shorten the prompts or max_new_tokens")


class CachedDecoder:
    """Runs the model over a growing batch of rows: the left-padded prompts first, then one token a step,
    with the backbone's growing key/value cache (eager backend). `logits` (rows, V) are the next-token
    logits; `reorder(rows)` keeps beam search's surviving rows; `step(tokens)` appends a token per row."""

    def __init__(self, model, prompts, pad_token_id):
        self.model = model
        width = max(len(prompt) for prompt in prompts)
        ids = np.full((len(prompts), width), pad_token_id, dtype=np.int64)
        mask = np.zeros((len(prompts), width), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = prompt
            mask[row, width - len(prompt):] = 1
        self.mask = mask  # (rows, tokens so far): 0 on the left padding
        self.next_position = mask.sum(axis=1)  # (rows,): real tokens so far
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)  # padding gets position 0, masked anyway
        self.cache = None
        self.logits = self._run(ids, positions)

    def _run(self, ids, positions):
        logits, self.cache = self.model.next_token_logits(torch.tensor(ids), torch.tensor(self.mask),
                                                          torch.tensor(positions), self.cache)
        return logits.asnumpy().astype(np.float64)  # (rows, V)

    def reorder(self, rows):
        """Keep rows `rows` (beam search's surviving beams), in that order."""
        self.cache.reorder_cache(torch.tensor(np.asarray(rows, dtype=np.int64)))
        self.mask = self.mask[rows]
        self.next_position = self.next_position[rows]

    def step(self, tokens):
        """Append one token per row; `self.logits` becomes the next-token logits."""
        self.mask = np.concatenate([self.mask, np.ones((len(tokens), 1), dtype=np.int64)], axis=1)
        self.logits = self._run(np.asarray(tokens, dtype=np.int64)[:, None], self.next_position[:, None])
        self.next_position = self.next_position + 1


def banned_tokens(history, n: int) -> set:
    """Tokens that would complete an n-gram already present in `history` (prompt + generated ids)."""
    history = np.asarray(history, dtype=np.int64)
    if n < 1 or len(history) < n:
        return set()
    if n == 1:
        return set(history.tolist())
    prefixes = np.lib.stride_tricks.sliding_window_view(history[:-1], n - 1)  # row i: history[i:i+n-1]
    repeats = np.all(prefixes == history[len(history) - n + 1:], axis=1)
    return set(history[n - 1:][repeats].tolist())


def _mask_scores(scores, histories, step: int, config: GenerationConfig):
    """Scores (rows, V) with repeated n-grams and, before `min_new_tokens`, the stop token made impossible.
    `histories`: per row, the prompt followed by the tokens generated so far."""
    if config.no_repeat_ngram_size:
        for row, history in enumerate(histories):
            scores[row, list(banned_tokens(history, config.no_repeat_ngram_size))] = -np.inf
    if step < config.min_new_tokens:
        scores[:, config.eos_token_id] = -np.inf
    return scores


def _greedy(new_decoder, prompts, config):
    decoder = new_decoder(prompts)
    generated = [[] for _ in prompts]
    finished = np.zeros(len(prompts), dtype=bool)
    for step in range(config.max_new_tokens):
        scores = _mask_scores(decoder.logits, [p + g for p, g in zip(prompts, generated)], step, config)
        tokens = scores.argmax(axis=1)
        for row, token in enumerate(tokens):
            if finished[row]:
                continue
            if token == config.eos_token_id:
                finished[row] = True
            else:
                generated[row].append(int(token))
        if finished.all() or step == config.max_new_tokens - 1:
            break
        decoder.step(np.where(finished, config.pad_token_id, tokens))
    return generated


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class _Hypotheses:
    """The best `num_beams` finished sequences of one prompt, by length-normalised score."""

    def __init__(self, num_beams, length_penalty):
        self.num_beams, self.length_penalty = num_beams, length_penalty
        self.items = []  # (normalised score, tokens)

    def normalise(self, score, length):
        return score / max(length, 1) ** self.length_penalty

    def add(self, tokens, score, length):
        self.items.append((self.normalise(score, length), tokens))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.num_beams:]

    def done(self, best_running_score, step: int, max_new_tokens: int):
        """Full, and no running beam can still beat the worst kept hypothesis. Log-probabilities only lower
        a running score, but a longer length raises its normalised value when length_penalty > 0, so the
        bound divides by the longest length still possible."""
        length = max_new_tokens if self.length_penalty > 0 else step + 1
        return (len(self.items) == self.num_beams
                and self.items[-1][0] >= self.normalise(best_running_score, length))

    def best(self):
        return self.items[0][1] if self.items else []


def _extend_beams(candidates, first_row: int, sequences, hypotheses: _Hypotheses, config: GenerationConfig):
    """One prompt's step: candidates (beams·V,) are beam score + next-token log-prob. Returns the best
    `num_beams` continuations (row, token, score) that do not stop; stops among the top `num_beams`
    candidates become finished hypotheses (one further down would not have survived either)."""
    vocab = len(candidates) // config.num_beams
    chosen = []
    for rank, flat in enumerate(np.argsort(-candidates, kind="stable")[:2 * config.num_beams]):
        score = candidates[flat]
        if not np.isfinite(score):
            break
        beam, token = divmod(int(flat), vocab)
        row = first_row + beam
        if token == config.eos_token_id:
            if rank < config.num_beams:
                hypotheses.add(sequences[row], score, len(sequences[row]) + 1)
            continue
        chosen.append((row, token, score))
        if len(chosen) == config.num_beams:
            break
    return chosen


def _beam_search(new_decoder, prompts, config):
    beams = config.num_beams
    # every beam of a prompt starts from the same prompt; rows are prompt-major: row = prompt·beams + beam
    decoder = new_decoder([prompt for prompt in prompts for _ in range(beams)])
    sequences = [[] for _ in range(len(prompts) * beams)]
    scores = np.full((len(prompts), beams), -np.inf)
    scores[:, 0] = 0.0  # identical beams at the start: expand only the first
    hypotheses = [_Hypotheses(beams, config.length_penalty) for _ in prompts]
    done = np.zeros(len(prompts), dtype=bool)
    for step in range(config.max_new_tokens):
        histories = [prompts[row // beams] + sequence for row, sequence in enumerate(sequences)]
        log_probs = _mask_scores(_log_softmax(decoder.logits), histories, step, config)  # (prompts·beams, V)
        candidates = scores.reshape(-1, 1) + log_probs
        rows, tokens = [], []
        for prompt in range(len(prompts)):
            chosen = []
            if not done[prompt]:
                first_row = prompt * beams
                chosen = _extend_beams(candidates[first_row:first_row + beams].reshape(-1), first_row, sequences,
                                       hypotheses[prompt], config)
                done[prompt] = not chosen or hypotheses[prompt].done(chosen[0][2], step, config.max_new_tokens)
                if done[prompt]:
                    chosen = []
            # every prompt keeps `beams` rows; throw-away rows (score -inf) fill the gaps
            chosen += [(prompt * beams, config.pad_token_id, -np.inf)] * (beams - len(chosen))
            for beam, (row, token, score) in enumerate(chosen):
                rows.append(row)
                tokens.append(token)
                scores[prompt, beam] = score
        sequences = [sequences[row] + [token] for row, token in zip(rows, tokens)]
        if done.all() or step == config.max_new_tokens - 1:
            break
        decoder.reorder(rows)
        decoder.step(tokens)
    for prompt in np.flatnonzero(~done):  # out of budget: running beams compete with finished ones
        for beam in range(beams):
            row = prompt * beams + beam
            if np.isfinite(scores[prompt, beam]):
                hypotheses[prompt].add(sequences[row], scores[prompt, beam], len(sequences[row]))
    return [hypothesis.best() for hypothesis in hypotheses]
