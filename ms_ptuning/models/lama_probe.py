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
embeddings); GPT-2's from the tied token embedding, as `GPT2LMHeadModel` computes them. Tensor code is
`mindspore.ops` only, so the probe compiles in GRAPH_MODE on the native backbones (the prompt encoder's
LSTM inside the compiled step) and runs op by op on the mindnlp ones.
"""

from mindspore import ops

from ..config import PTuningConfig
from ..lama.templates import MASKED, model_kind
from ..losses import cross_entropy
from .base import PTuningHead
from .pretraining_heads import BertOnlyMLMHead, freeze_cells

_MATMUL_NT = ops.MatMul(transpose_b=True)


def rows_at(hidden, positions):
    """hidden (B, T, H) at one position per row, positions (B,) → (B, H)."""
    batch, _, width = hidden.shape
    index = ops.broadcast_to(ops.reshape(positions, (batch, 1, 1)), (batch, 1, width))
    return ops.squeeze(ops.gather_elements(hidden, 1, index), 1)


class LamaProbe(PTuningHead):
    head_name = "lama"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        if config.mode not in ("prompt", "finetune"):
            raise ValueError("knowledge probing supports modes 'prompt' (P-tuning) and 'finetune', "
                             f"got {config.mode!r}")
        super().__init__(backbone, config, compute_dtype, sequence_output_only=True)  # as BertForMaskedLM
        self.kind = model_kind(self.backbone.config.model_type)
        self.template_prompts = config.mode == "prompt"
        self.cls = None
        if self.kind == MASKED:
            self.cls = BertOnlyMLMHead(self.backbone.config)
            if self.template_prompts:
                freeze_cells(self.cls)

    def answer_logits(self, hidden):
        """(B, H) → (B, V) through the LM's own output layer."""
        word_embeddings = self.backbone.word_embedding_weight
        if self.cls is not None:
            return self.cls(hidden, word_embeddings)
        return _MATMUL_NT(hidden, word_embeddings)

    def construct(self, input_ids, attention_mask, prompt_index, answer_position, labels=None):
        if self.template_prompts:
            hidden = self.encoder.forward_with_template_prompts(input_ids, attention_mask, prompt_index)
        else:
            hidden, _ = self.encoder(input_ids, attention_mask)  # (B, T, H)
        logits = self.answer_logits(rows_at(hidden, answer_position))  # (B, V)
        if labels is None:
            return None, logits
        return cross_entropy(logits, labels), logits
