"""Any other causal LM that mindnlp loads (Mistral, Gemma, Phi, OPT, BLOOM, GPT-NeoX, Falcon, ...), P-tuned eagerly
through its own cache interface, as peft's PeftModelForCausalLM tunes it.

GPT-2, Llama and Qwen2 have native Cells that compile (`ms_ptuning.native`); every other model type in
transformers' causal-LM mapping loads as its whole `*ForCausalLM` (`backbones.load_backbone(causal_lm=True)`)
and runs op by op on the eager backend behind the Backbone interface (`hf_backbone`), with two differences:
  - its sequence output is the model's own logits (B, T, V), not hidden states: the model's output layer and
    whatever follows it (OPT's projection, Phi's bias, Gemma-2's soft-capping, Cohere's logit scale) stay the
    model's, and `CausalLM` takes the logits as they are (`outputs_logits`);
  - positions go in only where its forward takes them (BLOOM's ALiBi reads them off the attention mask).
Prefix mode passes L (key, value) pairs, each (B, kv_heads, P, head_dim), as `past_key_values` (a DynamicCache),
the attention mask grows by P ones in front and the model numbers the real tokens from P, as peft does; prompt
mode prepends prompts to `inputs_embeds`. Both come from `ms_ptuning.modes` as for every backbone.

A prefix is sized from the config as peft sizes it (`modes.prefix.cached_heads`: `num_key_value_heads` or
`num_attention_heads`). `check_prefix_cache` runs one token behind a one-token prefix when prefix mode is built
and refuses, naming the model type and pointing to prompt mode, a model whose forward takes no
`past_key_values` (Mamba, RWKV) or whose cache does not come back as that prefix followed by the token at every
layer (multi-query Falcon, whose config does not name its single key/value head).
"""

import inspect

import numpy as np
from mindspore import Tensor
from .hf_backbone import HFBackbone
from .modes.prefix import cached_heads


class HFCausalLM(HFBackbone):
    """A whole mindnlp `*ForCausalLM` behind the Backbone interface: `construct` and `decode` return its logits
    (B, T, V) where `HFBackbone` returns hidden states; there is no pooler."""

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
        sized as `cached_heads` sizes them from its config."""
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
