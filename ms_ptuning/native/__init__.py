"""Native MindSpore BERT, RoBERTa, GPT-2 and Llama / Qwen2 backbones that GRAPH_MODE compiles.

mindnlp loads the model (config, tokenizer, safetensors weights); `to_native` moves its weights into these
Cells, whose parameter names are Hugging Face's, so one checkpoint or adapter serves them, the eager mindnlp
backbone and the torch reference alike. Every native backbone offers the backbone interface the P-tuning
modes drive:

- `config`: the Hugging Face config;
- `embed_words(input_ids) -> (B, T, H)`: word embeddings alone (prompt mode puts its prompts in front);
- `construct(input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None, position_ids=None,
  prefix_key_values=None) -> (sequence_output (B, T, H), pooled (B, H) or None)`: `prefix_key_values` are
  L pairs (key, value) of (B, heads, P, head_dim) in front of each layer's own; `attention_mask` then covers
  P + T and default positions continue after P as Hugging Face's do after a past of length P;
- `pool(sequence_output) -> (B, H) or None`;
- decoders (GPT-2, Llama / Qwen2) only: `decode(...) -> (hidden, present_key_values)`, the same forward
  returning its key/value cache (op by op in PyNative it is slow: over a second per GPT-2-small token);
  compiled, `GPT2Prefill` runs the prompt and `GPT2StaticStep` each next token against a fixed-size cache
  (`fixed_size_cache`), one graph per (batch, cache size); `NativeLlama` has the same `decode` /
  `decode_static` (its caches hold the `num_key_value_heads` heads of grouped-query attention), which
  `ms_ptuning.static_decoding` compiles for any native decoder.

Compile Cells whose outputs are tensors only, not these backbones themselves (their `construct` returns a
None pooled output for GPT-2, or BERT without a pooler): MindSpore 2.7 returns a None from a compiled graph
through a Python fallback (a PyExecute node), a host-side step no device graph should hold (`audit.py`
finds them). Heads, the step engines' graphs (an empty tuple for a missing loss) and the decoding Cells
return tensors only.

How the backbones compute (MindSpore's fused kernels on Ascend/GPU, compositions on CPU) is one per-device
choice made when they are built (`kernels.py`).

`set_compute_dtype(backbone, float16)` runs a native backbone in mixed precision (`precision.py`);
`recompute_layers(backbone)` recomputes its layers' activations in the backward pass (`recompute.py`).
"""

from .convert import NATIVE_MODEL_TYPES, build_native, check_native_config, to_native
from .gpt2 import GPT2Prefill, GPT2StaticStep, fixed_size_cache
from .precision import set_compute_dtype
from .recompute import recompute_layers

__all__ = ["NATIVE_MODEL_TYPES", "GPT2Prefill", "GPT2StaticStep", "build_native", "check_native_config",
           "fixed_size_cache", "recompute_layers", "set_compute_dtype", "to_native"]
