"""GPT-2 language model (summarization as `[CLS] article [SEP] summary [SEP]`) in finetune / prefix / prompt mode.

Positions: with a prefix of length P in the attention cache, or P prompts in front of the embeddings,
Hugging Face GPT-2 numbers the real tokens from P, and so do training, the torch reference and the
cached decoding in `ms_ptuning.generation` (which passes the same positions explicitly under left padding).
GPT-2 therefore needs `n_positions >= P + sequence length`.
"""

from mindspore import nn

from ..backend import torch
from ..config import PTuningConfig
from ..injection import PromptedBackbone
from ..losses import token_nll

F = torch.nn.functional


class CausalLM(nn.Cell):
    """Backbone hidden states → logits through the tied token embedding (GPT-2's LM head is `wte`).

    In prefix/prompt mode the backbone, and with it the tied LM head, stays frozen; only the prefix or
    prompt encoder trains.
    """

    def __init__(self, backbone, config: PTuningConfig, return_logits: bool = True):
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            raise ValueError(f"{type(backbone).__name__} is an encoder with a pooler; a causal LM needs a "
                             "decoder-only backbone such as GPT2Model")
        self.config = config
        self.return_logits = return_logits
        self.encoder = PromptedBackbone(backbone, config)

    @property
    def backbone(self):
        return self.encoder.backbone

    def lm_logits(self, hidden):
        """(B, T, H) → (B, T, V)."""
        return F.linear(hidden, self.backbone.get_input_embeddings().weight)

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
