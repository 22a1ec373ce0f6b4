"""GPT-2 language model (summarization as `[CLS] article [SEP] summary [SEP]`) in finetune / prefix / prompt mode.

Positions: with a prefix of length P in the attention cache, or P prompts in front of the embeddings,
Hugging Face GPT-2 numbers the real tokens from P, and so do training, the torch reference and the
cached decoding in `ms_ptuning.generation` (which passes the same positions explicitly under left padding).
GPT-2 therefore needs `n_positions >= P + sequence length`.

Written in `mindspore.ops` only, so the same head runs op by op over the mindnlp model (eager backend) and
compiles with the native GPT-2 (graph backend: `GraphSteps` for training and evaluation, the static-cache
Cells of `ms_ptuning.static_decoding` for generation).
"""

from mindspore import ops

from ..config import PTuningConfig
from ..losses import token_nll
from .base import PTuningHead

_MATMUL_NT = ops.MatMul(transpose_b=True)


def last_position(hidden):
    """(B, T, H) → (B, H): the hidden state of each row's last position."""
    return ops.squeeze(ops.narrow(hidden, 1, hidden.shape[1] - 1, 1), 1)


class CausalLM(PTuningHead):
    """Backbone hidden states → logits through the tied token embedding (GPT-2's LM head is `wte`).

    In prefix/prompt mode the backbone, and with it the tied LM head, stays frozen; only the prefix or
    prompt encoder trains.
    """

    head_name = "causal_lm"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None, return_logits: bool = True):
        if backbone.config.model_type != "gpt2":
            raise ValueError(f"a causal LM needs a decoder-only backbone such as GPT2Model, not a "
                             f"{backbone.config.model_type!r} model")
        super().__init__(backbone, config, compute_dtype)
        self.return_logits = return_logits

    def lm_logits(self, hidden):
        """(..., H) → (..., V): one 2-D MatMul against the tied (V, H) embedding."""
        weight = self.backbone.word_embedding_weight
        logits = _MATMUL_NT(ops.reshape(hidden, (-1, hidden.shape[-1])), weight)
        return ops.reshape(logits, hidden.shape[:-1] + (weight.shape[0],))

    def construct(self, input_ids, attention_mask, labels=None):
        """`(loss, outputs)`: loss is the mean next-token NLL over the labelled tokens; outputs are the
        logits (B, T, V), or with `return_logits=False` (evaluation of a large vocabulary, where the
        Trainer would gather N·T·V floats) the per-example (summed NLL (B,), token count (B,))."""
        hidden, _ = self.encoder(input_ids, attention_mask)  # (B, T, H), real tokens only
        logits = self.lm_logits(hidden)
        if labels is None:
            return None, logits
        nll, count = token_nll(logits, labels)
        loss = ops.div(ops.reduce_sum(nll), ops.clamp(ops.reduce_sum(count), min=1.0))
        return loss, (logits if self.return_logits else (nll, count))

    def next_token_logits(self, input_ids, attention_mask, position_ids, cache=None):
        """Logits (B, V) after the last of `input_ids`, and the cache to continue from.

        `attention_mask` (B, T_total) covers every real token so far; `position_ids` (B, T) count from the
        first real token (left padding makes them differ per row)."""
        hidden, cache = self.encoder.decode(input_ids, attention_mask, position_ids, cache)
        return self.lm_logits(last_position(hidden)), cache

    def next_token_logits_static(self, input_ids, attention_mask, position_ids, slot, cache):
        """One token per row against a fixed-size cache (native GPT-2, see `PromptedBackbone.decode_static`):
        (logits (B, V), the cache with this token written into `slot`)."""
        hidden, cache = self.encoder.decode_static(input_ids, attention_mask, position_ids, slot, cache)
        return self.lm_logits(last_position(hidden)), cache
