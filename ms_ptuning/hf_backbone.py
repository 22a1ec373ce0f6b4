"""The Backbone interface over a mindnlp (Hugging Face) model: the only thing the mode strategies call.

Interface (the native GRAPH_MODE Cells in `ms_ptuning.native` implement the same):
  - `config`: the Hugging Face config.
  - `embed_words(input_ids) -> (B, T, H)`: word embeddings only (prompt mode prepends prompts to them).
  - `construct(input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None, position_ids=None,
    prefix_key_values=None) -> (sequence_output (B, T_in, H), pooled (B, H) or None)`. `prefix_key_values`: L
    pairs (key, value), each (B, heads, P, head_dim); the mask then covers P + T_in and positions start at P,
    as Hugging Face numbers them after a past of length P.
  - `pool(sequence_output) -> pooled or None`; `drop_pooler()` removes the pooler (heads that read only the
    sequence output, so its weights neither train nor count).
  - `word_embedding_weight`: the (V, H) input embedding, which tied output layers multiply by.
  - `decode(...)`: GPT-2's incremental decoding, a cache of past keys/values in, the extended one out.

Everything mindtorch-specific stays in this file: the DynamicCache, DeBERTa's prefix attention
(`deberta_prefix`), tagging MindSpore tensors for mindtorch, and mixed precision (autocast + frozen weights
stored in the low dtype).

Any other causal LM (`HFCausalLM`): GPT-2, Llama and Qwen2 have backbones of their own (native Cells that
compile); every other model type in transformers' causal-LM mapping (Mistral, Gemma, Phi, OPT, BLOOM, GPT-NeoX,
Falcon, ...) loads as its whole `*ForCausalLM` (`backbones.load_backbone(causal_lm=True)`) and runs here, on
the eager backend, P-tuned through its own cache interface as peft's PeftModelForCausalLM tunes it: the
prefix as `past_key_values` (a DynamicCache; the mask grows by P ones, the model numbers the real tokens from
P), prompts through `inputs_embeds`. Its sequence output is its own logits (B, T, V), so its output layer and
whatever follows it (OPT's projection, Phi's bias, Gemma-2's soft-capping) stay the model's. A model whose
forward takes no `past_key_values` (Mamba) or whose cache does not hold the prefix peft would size from its
config (multi-query Falcon) is refused by name in prefix mode (`check_prefix_cache`), pointing to prompt mode.
"""

import contextlib
import inspect

import numpy as np

import mindspore
from mindspore import Tensor, nn, ops

from .backend import to_mindtorch, torch
from transformers.cache_utils import DynamicCache
from .deberta_prefix import DEBERTA_MODEL_TYPES, forward_with_prefix
from .native import set_compute_dtype


def freeze(module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad = False


def cast_frozen_weights(model, dtype) -> None:
    """Store the model's frozen weights, except the input embedding, in `dtype`.

    Each Parameter is replaced by a new one: mindtorch 0.5.1's `Module.to(dtype)` and `.half()` only relabel
    the dtype in place, and kernels still receive float32 (BiasAdd fails with mixed input types). One new
    Parameter per old one, so tied weights stay tied. The input embedding stays float32 because tied heads
    (GPT-2's LM head, BERT's MLM decoder) multiply by it in float32 outside the backbone.
    """
    keep = model.get_input_embeddings().weight
    replaced = {}
    for module in model.modules():
        for key, param in module._parameters.items():
            if param is None or param.requires_grad or param is keep:
                continue
            if id(param) not in replaced:
                replaced[id(param)] = torch.nn.Parameter(param.to(dtype), requires_grad=False)
            module._parameters[key] = replaced[id(param)]


class HFBackbone(nn.Cell):
    """A mindnlp model behind the Backbone interface.

    `trainable=False` freezes it; `compute_dtype` (float16/bfloat16) runs it under MindSpore's automatic
    mixed precision (mindtorch's `torch.autocast`: MatMuls in that dtype, softmax, LayerNorm and the like in
    float32) with its frozen weights stored in that dtype. Outputs are always float32.
    """

    def __init__(self, model, trainable: bool = True, compute_dtype=None):
        super().__init__()
        self.model = model  # a mindtorch module, not a Cell: `weights.named_weights` lists its parameters
        self.config = model.config
        self.compute_dtype = compute_dtype
        if not trainable:
            freeze(model)
        if compute_dtype is not None:
            cast_frozen_weights(model, compute_dtype)

    @property
    def word_embedding_weight(self):
        return self.model.get_input_embeddings().weight

    @property
    def pooler(self):
        return getattr(self.model, "pooler", None)

    def drop_pooler(self) -> None:
        """As Hugging Face builds BERT for token classification and QA: unused, the pooler's weights would be
        trainable in finetune mode yet never receive a gradient."""
        if self.pooler is not None:
            self.model.pooler = None

    def embed_words(self, input_ids):
        return self.model.get_input_embeddings()(input_ids)

    def construct(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None,
                  position_ids=None, prefix_key_values=None):
        inputs = self._inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids)
        with self._autocast():
            if prefix_key_values is not None and self.config.model_type in DEBERTA_MODEL_TYPES:
                outputs = self._deberta_with_prefix(self._tag_pairs(prefix_key_values), **inputs)
            elif prefix_key_values is not None:
                outputs = self.model(**inputs, past_key_values=self._cache(prefix_key_values))
            else:
                outputs = self.model(**inputs)
        pooled = getattr(outputs, "pooler_output", None) if self.pooler is not None else None
        return self._float32(self._sequence_output(outputs)), self._float32(pooled)

    def pool(self, sequence_output):
        if self.pooler is None:
            return None
        with self._autocast():
            return self._float32(self.pooler(self._tag(sequence_output)))

    def decode(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None,
               prefix_key_values=None):
        """Incremental decoding (GPT-2): `(hidden (B, T_in, H), cache)`. The first call passes no `cache`
        (with a prefix, `prefix_key_values` starts it); later calls pass the returned one, which holds every
        key/value so far and supports `reorder_cache(rows)` for beam search."""
        if cache is None and prefix_key_values is not None:
            cache = self._cache(prefix_key_values)
        inputs = self._inputs(input_ids, inputs_embeds, attention_mask, None, position_ids)
        with self._autocast():
            outputs = self.model(**inputs, past_key_values=cache, use_cache=True)
        return self._float32(self._sequence_output(outputs)), outputs.past_key_values

    def _sequence_output(self, outputs):
        return outputs.last_hidden_state

    def _sync_mode(self) -> None:
        """`set_train` on an outer Cell sets the `training` flag of the Cells below it only; the mindtorch
        model is no Cell, so its mode follows ours at every call."""
        if self.model.training != self.training:
            self.model.train(self.training)

    def _inputs(self, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids) -> dict:
        self._sync_mode()
        inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask,
                  "token_type_ids": token_type_ids, "position_ids": position_ids}
        return {name: self._tag(value) for name, value in inputs.items() if value is not None}

    def _deberta_with_prefix(self, pairs, input_ids, attention_mask, token_type_ids=None, position_ids=None):
        """DeBERTa takes no cache: the prefix goes into its attention layers (`deberta_prefix`), which want
        the (B, T) mask of the real tokens and positions counted from the first real token."""
        num_prefix = pairs[0][0].shape[-2]
        attention_mask = attention_mask[:, num_prefix:]
        if position_ids is not None:
            position_ids = position_ids - num_prefix
        return forward_with_prefix(self.model, pairs, input_ids, attention_mask, token_type_ids, position_ids)

    def _cache(self, prefix_key_values) -> DynamicCache:
        """A fresh cache per call: the forward pass extends it in place."""
        return DynamicCache.from_legacy_cache(self._tag_pairs(prefix_key_values))

    def _tag_pairs(self, prefix_key_values) -> tuple:
        return tuple((self._tag(key), self._tag(value)) for key, value in prefix_key_values)

    def _tag(self, tensor):
        """MindSpore tensors made by our Cells, tagged with the device mindtorch's dispatcher asks for."""
        return None if tensor is None else to_mindtorch(tensor, like=self.word_embedding_weight)

    def _autocast(self):
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.word_embedding_weight.device.type, dtype=self.compute_dtype)

    def _float32(self, tensor):
        """Outputs as the float32 heads, logits and losses expect them."""
        return tensor if tensor is None or self.compute_dtype is None else tensor.float()


def cached_heads(model_config) -> tuple:
    """(heads, head_dim) of the backbone's attention cache, which the prefix fills: with grouped-query attention
    (Llama / Qwen2's `num_key_value_heads` < `num_attention_heads`) only the key/value heads, as peft's prefix
    tuning sizes it (2·L·kv_heads·head_dim numbers per virtual token)."""
    heads = model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return getattr(model_config, "num_key_value_heads", None) or heads, head_dim


class HFCausalLM(HFBackbone):
    """A whole mindnlp `*ForCausalLM` behind the Backbone interface (eager only): `construct` and `decode`
    return its logits (B, T, V) where `HFBackbone` returns hidden states (`CausalLM` takes them as they are);
    there is no pooler. Positions go in only where its forward takes them (BLOOM's ALiBi reads them off the
    attention mask)."""

    outputs_logits = True

    def __init__(self, model, trainable: bool = True, compute_dtype=None):
        super().__init__(model, trainable, compute_dtype)
        self.forward_arguments = frozenset(inspect.signature(model.forward).parameters)

    def _sequence_output(self, outputs):
        return outputs.logits

    def _inputs(self, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids) -> dict:
        if "position_ids" not in self.forward_arguments:
            position_ids = None  # ALiBi (BLOOM): positions follow from the attention mask
        return super()._inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids)

    def check_prefix_cache(self) -> None:
        """Refuse, with the reason, a model that cannot take L (key, value) prefixes of (B, heads, P, head_dim)
        sized from its config as peft sizes them (`cached_heads`): run one token behind a one-token prefix and
        expect the cache to come back holding both at every layer."""
        model_type = self.config.model_type
        advice = ("; use prompt mode (--mode prompt), which feeds its virtual tokens through inputs_embeds, or "
                  "a native decoder (gpt2, llama, qwen2)")
        if "past_key_values" not in self.forward_arguments:
            raise ValueError(f"{model_type} cannot take a prefix (P-tuning v2): its forward takes no "
                             f"past_key_values{advice}")
        layers, (heads, head_dim) = self.config.num_hidden_layers, cached_heads(self.config)
        zeros = np.zeros((1, heads, 1, head_dim), np.float32)
        prefix = tuple((Tensor(zeros), Tensor(zeros)) for _ in range(layers))
        inputs = self._inputs(Tensor(np.zeros((1, 1), np.int64)), None, Tensor(np.ones((1, 2), np.int64)), None,
                              None)
        training = self.model.training
        self.model.eval()
        try:
            cache = self.model(**inputs, past_key_values=self._cache(prefix), use_cache=True).past_key_values
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            settle_pending_errors()
            raise ValueError(f"{model_type} cannot take a prefix (P-tuning v2) of {layers} layers × {heads} "
                             f"key/value heads × {head_dim} (sized from its config, as peft sizes it): its forward "
                             f"fails with {type(error).__name__}: {str(error).splitlines()[0]}{advice}") from error
        finally:
            self.model.train(training)
        expected = [(1, heads, 2, head_dim)] * layers
        found = [tuple(layer.keys.shape) for layer in getattr(cache, "layers", ())]
        if found != expected:
            raise ValueError(f"{model_type} cannot take a prefix (P-tuning v2): after a 1-token prefix and 1 token "
                             f"its cache holds {found or type(cache).__name__}, not {layers} layers of keys "
                             f"{expected[0]} (key/value heads and head size from its config, as peft sizes "
                             f"them){advice}")


def settle_pending_errors() -> None:
    """Wait for MindSpore's queued op-by-op work and drop an error it still holds: after a failed forward, PyNative
    can raise the same error again from the next, unrelated op (seen twice on a loaded machine: Falcon's probe's
    Concat error raised by the next test's Mamba build). Reading an op's result waits for the queues."""
    try:
        ops.zeros((1,), mindspore.float32).asnumpy()
    except (RuntimeError, ValueError, TypeError, IndexError):
        pass


def is_whole_causal_lm(model) -> bool:
    """A mindnlp model with its own output layer (a `*ForCausalLM`, which `HFCausalLM` wraps), not a backbone
    alone (`AutoModel`) nor a native Cell."""
    return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None


def as_backbone(backbone, trainable: bool = True, compute_dtype=None):
    """A model behind the Backbone interface: a mindnlp model is wrapped in `HFBackbone`, or in `HFCausalLM`
    when it is a whole causal LM with its own output layer; a Cell that already implements the interface (the
    native backbones) is frozen when asked, then set to `compute_dtype` (its frozen weights stored in it,
    `native.set_compute_dtype`)."""
    if not hasattr(backbone, "embed_words"):
        wrapper = HFCausalLM if is_whole_causal_lm(backbone) else HFBackbone
        return wrapper(backbone, trainable, compute_dtype)
    current = getattr(backbone, "compute_dtype", None)
    if current is not None and current != compute_dtype:
        raise ValueError(f"{type(backbone).__name__} computes in {current} already, the model asks for "
                         f"{compute_dtype}: a backbone's precision is set once")
    if not trainable:
        for parameter in backbone.get_parameters():
            parameter.requires_grad = False
    if compute_dtype is not None and current is None:
        set_compute_dtype(backbone, compute_dtype)
    return backbone
