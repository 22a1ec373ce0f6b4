"""Causal language model over a decoder backbone (GPT-2, Llama, Qwen2, or any other causal LM mindnlp loads) in
finetune / prefix / prompt mode; GPT-2 summarization trains it as `[CLS] article [SEP] summary [SEP]`.

The LM head is the token embedding (tied: GPT-2, and Llama / Qwen2 with `tie_word_embeddings`) or the
checkpoint's own `lm_head.weight` (V, H) (Llama / Qwen2 untied, Hugging Face's name). Other causal LMs run
whole (`ms_ptuning.hf_backbone.HFCausalLM`, eager only) with their own output layer: their backbone's output
is the logits already. The head trains with the backbone: in prefix/prompt mode it stays frozen, as peft freezes
every base weight.

Positions: with a prefix of length P in the attention cache, or P prompts in front of the embeddings,
Hugging Face GPT-2 (and Llama / Qwen2, their rotary phases) numbers the real tokens from P, and so do training,
the torch reference and the cached decoding in `ms_ptuning.generation` (which passes the same positions
explicitly under left padding). GPT-2 therefore needs `n_positions >= P + sequence length`.

Written in `mindspore.ops` only, so the same head runs op by op over the mindnlp model (eager backend) and
compiles with the native decoders (graph backend: `GraphSteps` for training and evaluation, the static-cache
Cells of `ms_ptuning.static_decoding` for generation).
"""

import os

import numpy as np
from mindspore import dtype as mstype
from mindspore import ops

from ..config import PTuningConfig
from ..device.kernels import device_kernels
from ..hf_backbone import is_whole_causal_lm
from ..losses import IGNORE_INDEX, token_nll
from ..layers import Linear
from ..native.functional import cpu_matmuls
from ..safe_loading import read_tensor
from ..weights import assign_weights
from .base import PTuningHead

_MATMUL_NT = ops.MatMul(transpose_b=True)
DECODER_MODEL_TYPES = ("gpt2", "llama", "qwen2")


def load_lm_head(model, directory: str) -> None:
    """An untied head's weights from the pretrained checkpoint in `directory`: the backbone loads as
    `AutoModel` (LlamaModel, Qwen2Model), which leaves the checkpoint's `lm_head.weight` out. Tied heads
    need nothing."""
    if getattr(model, "lm_head", None) is None:
        return
    if not os.path.isdir(directory):
        raise ValueError(f"{directory!r} is not a local directory: an untied LM head (tie_word_embeddings=False) "
                         "is read from the checkpoint's safetensors; pass the model's local directory")
    weight = read_tensor(directory, "lm_head.weight")
    if weight is None:
        raise ValueError(f"{directory}: the config unties the LM head (tie_word_embeddings=False) but no "
                         "*.safetensors file there holds lm_head.weight")
    stored = model.lm_head.weight.dtype  # the low dtype of a frozen head under mixed precision: rounded into it
    model.lm_head.weight.set_dtype(mstype.float32)
    assign_weights(model, {"lm_head.weight": weight}, strict=False, source=f"{directory}'s lm_head.weight")
    model.lm_head.weight.set_dtype(stored)


def last_position(hidden):
    """(B, T, H) → (B, H): the hidden state of each row's last position."""
    return ops.squeeze(ops.narrow(hidden, 1, hidden.shape[1] - 1, 1), 1)


class CausalLM(PTuningHead):
    """Backbone hidden states → logits through the tied token embedding or an untied `lm_head`.

    In prefix/prompt mode the backbone, and with it the LM head, stays frozen; only the prefix or prompt
    encoder trains.
    """

    head_name = "causal_lm"

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None, return_logits: bool = True):
        model_config = backbone.config
        if model_config.model_type not in DECODER_MODEL_TYPES and not is_whole_causal_lm(backbone):
            raise ValueError(f"a causal LM needs a decoder-only backbone ({', '.join(DECODER_MODEL_TYPES)}, or any "
                             f"causal LM loaded whole), not a {model_config.model_type!r} model")
        if compute_dtype is not None and is_whole_causal_lm(backbone):
            raise ValueError(f"mixed precision is not implemented for {model_config.model_type} causal LMs run whole "
                             "(only gpt2, llama and qwen2 have it); pass --mixed_precision no")
        super().__init__(backbone, config, compute_dtype)
        # a causal LM run whole (`hf_backbone.HFCausalLM`, eager): its backbone's output is the logits already
        self.backbone_outputs_logits = getattr(self.backbone, "outputs_logits", False)
        self.return_logits = return_logits
        self.lm_head, self.head_dtype = None, None
        # outside training on CPU, the CPU's GEMM kernel (as `native.cells.Linear`): the vocabulary's product is
        # the largest of a step
        self.cpu_product = cpu_matmuls(True, device_kernels())[0]
        if not self.backbone_outputs_logits and not getattr(model_config, "tie_word_embeddings", True):
            # Hugging Face's `lm_head` (Linear(H, V), no bias), N(0, initializer_range) until a checkpoint's is loaded
            self.lm_head = Linear(model_config.hidden_size, model_config.vocab_size, bias=False, std=self.init_std)
            self.lm_head.weight.requires_grad = config.trains_backbone
            if compute_dtype is not None and not config.trains_backbone:
                # frozen like the backbone: stored and multiplied in the low dtype (autocast's rule for a
                # Linear), the logits float32; a tied head multiplies by the float32 input embedding instead
                self.lm_head.weight.set_dtype(compute_dtype)
                self.head_dtype = compute_dtype

    @staticmethod
    def loss_weight(batch: dict) -> int:
        """The tokens the loss averages over: labelled next tokens (what `token_nll` counts). Data-parallel
        workers weigh their shards by it (`training.steps.shard_share`)."""
        return int(np.count_nonzero(np.asarray(batch["labels"])[:, 1:] != IGNORE_INDEX))

    def lm_logits(self, hidden):
        """(..., H) → (..., V): one 2-D MatMul against the (V, H) output embedding; a causal LM run whole
        has made its logits already."""
        if self.backbone_outputs_logits:
            return hidden
        weight = self.backbone.word_embedding_weight if self.lm_head is None else self.lm_head.weight
        flat = ops.reshape(hidden, (-1, hidden.shape[-1]))
        if self.head_dtype is None:
            cpu = (self.cpu_product is not None and not self.training and flat.dtype == mstype.float32
                   and weight.dtype == mstype.float32)
            logits = self.cpu_product(flat, weight) if cpu else _MATMUL_NT(flat, weight)
        else:
            logits = ops.cast(_MATMUL_NT(ops.cast(flat, self.head_dtype), weight), mstype.float32)
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
