"""Decoding on the graph backend: a `CausalLM` over a native decoder (GPT-2, Llama, Qwen2) generates against a
fixed-size key/value cache, with two compiled graphs (GRAPH_MODE) per (rows, prompt width, cache size):

  prefill  the virtual tokens (prefix or prompts) and the left-padded prompts in one pass → the logits after
           each prompt and the cache, zero-padded to its fixed size;
  step     one token per row written into its slot of the cache (the backbone's `decode_static`) → the next
           logits and the cache. For beam search the same graph first gathers the cache rows of the beams
           that survive (`rows`), as Hugging Face's `reorder_cache` does: a copy of the cache, which writing a
           token into it (a `where` over the whole cache) costs anyway.

Shapes are fixed per `generate` call, so each call compiles at most these two graphs: every batch of
prompts is left-padded to the same width (the longest prompt of the call rounded up to a multiple of
`WIDTH_STEP`, so that calls with similar prompts reuse the graphs), a short last batch is filled up with
copies of its first prompt whose outputs are dropped, and the cache holds virtual tokens + width +
max_new_tokens − 1 slots (the last token generated is never fed back). Left padding is masked and positions
are explicit, so the extra padding changes no result. The search itself (`ms_ptuning.generation`) is the
eager backend's, on numpy.
"""

import mindspore
import numpy as np
from mindspore import Tensor, nn, ops

from .backend import graph_mode
from .encoders.folding import compile_encoders
from .native import fixed_size_cache

WIDTH_STEP = 64  # prompt widths are rounded up to a multiple of this: fewer distinct graphs


def uses_static_cache(model) -> bool:
    """Whether `model` (a CausalLM) runs on a backbone that decodes against a fixed-size cache (a native one)."""
    return hasattr(model.backbone, "decode_static")


class Prefill(nn.Cell):
    """(input_ids, attention_mask, position_ids) of left-padded prompts (B, W) → (logits (B, V) after each
    prompt, the cache of the virtual tokens and the prompts, zero-padded to `cache_size` slots)."""

    def __init__(self, model, cache_size: int):
        super().__init__(auto_prefix=False)
        self.model, self.cache_size = model, cache_size

    def construct(self, input_ids, attention_mask, position_ids):
        logits, cache = self.model.next_token_logits(input_ids, attention_mask, position_ids)
        return logits, fixed_size_cache(cache, self.cache_size)


class Step(nn.Cell):
    """One token per row: (input_ids (B, 1), real-slot mask (B, S − virtual), position_ids (B, 1), slot (S,)
    one-hot, cache, rows (B,) or None) → (logits (B, V), the cache with the token written in). With `rows`
    the cache's rows are first gathered in that order (beam search keeping its best continuations)."""

    def __init__(self, model):
        super().__init__(auto_prefix=False)
        self.model = model

    def construct(self, input_ids, attention_mask, position_ids, slot, cache, rows=None):
        if rows is not None:
            cache = tuple((ops.gather(key, rows, 0), ops.gather(value, rows, 0)) for key, value in cache)
        return self.model.next_token_logits_static(input_ids, attention_mask, position_ids, slot, cache)


def compiled_cells(model, cache_size: int) -> tuple:
    """The (Prefill, Step) Cells of `model` for `cache_size`, kept on the model so that later calls reuse
    their compiled graphs (MindSpore caches a graph per Cell instance and input shapes)."""
    # a plain dict in __dict__: not a Cell attribute, so no cycle in the model's cells_and_names
    cells = model.__dict__.setdefault("_static_decoding_cells", {})
    if cache_size not in cells:
        compile_encoders(model, enabled=False)  # their PyNative-only `mindspore.jit` pieces: the graphs hold them
        cells[cache_size] = (Prefill(model, cache_size), Step(model))
    return cells[cache_size]


class StaticCacheDecoder:
    """`generation`'s decoder interface (`logits`, `reorder(rows)`, `step(tokens)`) on the compiled graphs.

    `prompts` are `rows` at most; the decoder fills up the rest with copies of the first prompt and hides
    them: `logits` holds the given prompts' rows only."""

    def __init__(self, model, prompts, pad_token_id: int, width: int, rows: int, max_new_tokens: int):
        self.count, self.pad_token_id = len(prompts), pad_token_id
        prompts = list(prompts) + [prompts[0]] * (rows - len(prompts))
        self.virtual = model.config.num_virtual_tokens
        self.width = width
        cache_size = self.virtual + width + max_new_tokens - 1
        self.prefill, self.step_cell = compiled_cells(model, cache_size)
        self.mask = np.zeros((rows, width + max_new_tokens - 1), np.int64)  # the cache's real slots
        ids = np.full((rows, width), pad_token_id, np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = prompt
            self.mask[row, width - len(prompt):width] = 1
        self.next_position = self.mask.sum(axis=1)  # (rows,): real tokens so far
        positions = np.maximum(np.cumsum(self.mask[:, :width], axis=1) - 1, 0)  # padding: 0, masked anyway
        self.steps, self.rows = 0, None
        logits, self.cache = self._launch(self.prefill, Tensor(ids), Tensor(self.mask[:, :width]), Tensor(positions))
        self._logits = logits.asnumpy().astype(np.float64)

    @property
    def logits(self):
        """(prompts, V): the next-token logits of the given prompts' rows."""
        return self._logits[:self.count]

    def reorder(self, rows) -> None:
        """Keep rows `rows` (beam search's surviving beams), in that order; filler rows keep themselves."""
        rows = np.concatenate([np.asarray(rows, np.int32), np.arange(self.count, len(self.mask), dtype=np.int32)])
        self.mask, self.next_position, self.rows = self.mask[rows], self.next_position[rows], rows

    def step(self, tokens) -> None:
        """Append one token per given row (filler rows get padding); `logits` becomes the next ones."""
        tokens = np.concatenate([np.asarray(tokens, np.int64),
                                 np.full(len(self.mask) - self.count, self.pad_token_id, np.int64)])
        column = self.width + self.steps
        self.mask[:, column] = 1
        slot = np.zeros(self.virtual + self.mask.shape[1], np.float32)
        slot[self.virtual + column] = 1.0
        rows = None if self.rows is None else Tensor(self.rows)
        logits, self.cache = self._launch(self.step_cell, Tensor(tokens[:, None]), Tensor(self.mask),
                                          Tensor(self.next_position[:, None]), Tensor(slot),
                                          mindspore.mutable(self.cache), rows)
        self._logits = logits.asnumpy().astype(np.float64)
        self.next_position, self.steps, self.rows = self.next_position + 1, self.steps + 1, None

    @staticmethod
    def _launch(cell, *inputs):
        cell.set_train(False)
        with graph_mode():
            return cell(*inputs)


def static_decoder_factory(model, prompts: list, config):
    """A function (prompts of one batch, expanded per beam) → StaticCacheDecoder, with the shapes fixed for
    every batch of this `generate` call (`config`: a GenerationConfig)."""
    longest = max(len(prompt) for prompt in prompts)
    width = -(-longest // WIDTH_STEP) * WIDTH_STEP
    rows = min(len(prompts), config.batch_size) * config.num_beams

    def new_decoder(batch_prompts):
        return StaticCacheDecoder(model, batch_prompts, config.pad_token_id, width, rows, config.max_new_tokens)

    return new_decoder
