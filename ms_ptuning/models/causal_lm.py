"""GPT-2 language model (summarization as `[CLS] article [SEP] summary [SEP]`) in finetune / prefix / prompt mode.

Positions: with a prefix of length P in the attention cache, or P prompts in front of the embeddings,
Hugging Face GPT-2 numbers the real tokens from P, and so do training, the torch reference and the
cached decoding in `ms_ptuning.generation` (which passes the same positions explicitly under left padding).
GPT-2 therefore needs `n_positions >= P + sequence length`.
"""

from ..backend import torch
from ..config import PTuningConfig
from ..losses import token_nll
from .base import PTuningHead

F = torch.nn.functional


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
        """(B, T, H) → (B, T, V)."""
        return F.linear(hidden, self.backbone.word_embedding_weight)

    def construct(self, input_ids, attention_mask, labels=None):
        """`(loss, outputs)`: loss is the mean next-token NLL over the labelled tokens; outputs are the
        logits (B, T, V), or with `return_logits=False` (evaluation of a large vocabulary, where the
        Trainer would gather N·T·V floats) the per-example (summed NLL (B,), token count (B,))."""
        hidden, _ = self.encoder(input_ids, attention_mask)  # (B, T, H), real tokens only
        logits = self.lm_logits(hidden)
        if labels is None:
            return None, logits
        nll, count = token_nll(logits, labels)
        loss = nll.sum() / count.sum().clamp(min=1.0)
        return loss, (logits if self.return_logits else (nll, count))

    def next_token_logits(self, input_ids, attention_mask, position_ids, cache=None):
        """Logits (B, V) after the last of `input_ids`, and the cache to continue from.

        `attention_mask` (B, T_total) covers every real token so far; `position_ids` (B, T) count from the
        first real token (left padding makes them differ per row)."""
        hidden, cache = self.encoder.decode(input_ids, attention_mask, position_ids, cache)
        return self.lm_logits(hidden[:, -1]), cache
