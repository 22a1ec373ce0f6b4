"""P-tuning v1 knowledge probe: a frozen masked LM (BERT) or causal LM (GPT-2) plus a prompt encoder.

`construct(input_ids, attention_mask, prompt_index, answer_position, labels=None)` returns
`(cross-entropy over the vocabulary or None, logits (B, V) at the answer position)`.

- mode "prompt" (P-tuning): the prompt encoder's rows replace the pseudo-token positions of the word
  embeddings (`PromptTuning.forward_with_template_prompts`); the LM and its output head are frozen.
  A query without pseudo tokens (a manual template: `prompt_index` all -1) runs the frozen LM on its
  word embeddings alone, which is how the manual baseline is scored by the very same model and code.
- mode "finetune": no prompt encoder, manual templates, every weight trainable (the reference's
  `use_lm_finetune` with the original template).

BERT's answer logits come from `BertOnlyMLMHead` (HF names `cls.predictions.*`, decoder tied to the word
embeddings); GPT-2's from the tied token embedding, as `GPT2LMHeadModel` computes them.
"""

from ..backend import to_mindtorch, torch
from ..config import PTuningConfig
from ..lama.templates import MASKED, model_kind
from .base import PTuningHead
from .pretraining_heads import BertOnlyMLMHead, freeze_cells

F = torch.nn.functional


class LamaProbe(PTuningHead):
    head_name = "lama"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        if config.mode not in ("prompt", "finetune"):
            raise ValueError("knowledge probing supports modes 'prompt' (P-tuning) and 'finetune', "
                             f"got {config.mode!r}")
        super().__init__(backbone, config, compute_dtype, sequence_output_only=True)  # as BertForMaskedLM
        self.kind = model_kind(self.backbone.config.model_type)
        if self.kind == MASKED:
            self.cls = BertOnlyMLMHead(self.backbone.config)
            if config.mode == "prompt":
                freeze_cells(self.cls)

    def answer_logits(self, hidden):
        """(B, H) → (B, V) through the LM's own output layer."""
        word_embeddings = self.backbone.word_embedding_weight
        if self.kind == MASKED:
            return to_mindtorch(self.cls(hidden, word_embeddings), like=word_embeddings)
        return F.linear(hidden, word_embeddings)

    def construct(self, input_ids, attention_mask, prompt_index, answer_position, labels=None):
        if self.config.mode == "prompt":
            hidden = self.encoder.forward_with_template_prompts(input_ids, attention_mask, prompt_index)
        else:
            hidden, _ = self.encoder(input_ids, attention_mask)  # (B, T, H)
        index = answer_position.long().reshape(-1, 1, 1).expand(-1, 1, hidden.shape[-1])
        logits = self.answer_logits(hidden.gather(1, index).squeeze(1))  # (B, V)
        if labels is None:
            return None, logits
        return F.cross_entropy(logits, labels.long()), logits
