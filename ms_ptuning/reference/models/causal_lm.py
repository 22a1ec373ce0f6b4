"""Reference GPT-2 language model head and greedy decoding, in real torch."""

import torch
from torch.nn import functional as F

from .base import PTuningHead


def causal_lm_loss(logits, labels):
    """Next-token cross entropy: position t predicts token t+1; labels -100 are ignored."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1).long(),
                           ignore_index=-100)


class CausalLM(PTuningHead):
    """Backbone hidden states → logits through the tied token embedding, as GPT-2's LM head does."""

    head_name = "causal_lm"

    def forward(self, input_ids, attention_mask, labels=None):
        hidden, _ = self.encoder(input_ids, attention_mask)
        logits = F.linear(hidden, self.backbone.word_embedding_weight)
        return (None if labels is None else causal_lm_loss(logits, labels)), logits

    @torch.no_grad()
    def greedy_generate(self, prompts, max_new_tokens, eos_token_id):
        """One prompt at a time, the whole sequence recomputed at every step (no cache, no padding):
        the plainest decode, against which the cached, left-padded one is checked."""
        generations = []
        for prompt in prompts:
            ids = list(prompt)
            for _ in range(max_new_tokens):
                inputs = torch.tensor([ids])
                _, logits = self(inputs, torch.ones_like(inputs))
                token = int(logits[0, -1].argmax())
                if token == eos_token_id:
                    break
                ids.append(token)
            generations.append(ids[len(prompt):])
        return generations
