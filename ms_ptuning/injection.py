"""The one place where prefixes (P-tuning v2) and prompts (P-tuning v1) enter a backbone.

Every head wraps its backbone in `PromptedBackbone` and only ever sees the hidden states of the real tokens.
"""

import contextlib

from mindspore import nn

from .backend import to_mindtorch, torch
from .config import PTuningConfig
from .deberta_prefix import DEBERTA_MODEL_TYPES, forward_with_prefix
from .encoders import PrefixEncoder, PromptEncoder
from .backbones import freeze
from transformers.cache_utils import DynamicCache


def layer_prefixes(prefix, num_layers: int) -> tuple:
    """(2L, B, heads, P, head_dim) → L pairs (key, value), each (B, heads, P, head_dim)."""
    return tuple((prefix[2 * i], prefix[2 * i + 1]) for i in range(num_layers))


def prefix_cache(prefix, num_layers: int) -> DynamicCache:
    """(2L, B, heads, P, head_dim) → a cache holding each layer's key/value prefix.

    The cache is extended in place by the forward pass, so a fresh one is built for every call.
    """
    return DynamicCache.from_legacy_cache(layer_prefixes(prefix, num_layers))


def extend_attention_mask(attention_mask, num_virtual_tokens: int):
    """(B, T) → (B, P+T): the prefix/prompt positions are always attended to."""
    ones = torch.ones(attention_mask.shape[0], num_virtual_tokens, dtype=attention_mask.dtype,
                      device=attention_mask.device)
    return torch.cat([ones, attention_mask], dim=1)


def place_prompts(word_embeddings, prompts, prompt_index):
    """P-tuning v1 prompts inside a template: (B, T, H) word embeddings, (n, H) prompt rows and (B, T)
    `prompt_index` (k at the k-th pseudo token, -1 at real tokens) → (B, T, H) with every pseudo position
    holding its prompt row and every real position its word embedding."""
    rows = torch.nn.functional.embedding(prompt_index.clamp(min=0).long(), prompts.to(word_embeddings.dtype))
    return torch.where((prompt_index >= 0).unsqueeze(-1), rows, word_embeddings)


class PromptedBackbone(nn.Cell):
    """A mindnlp backbone plus its prefix or prompt encoder.

    `construct` returns `(sequence_output (B, T, H), pooled_output (B, H) or None)` for the real tokens:
    prefix positions live only in the attention cache, prompt positions are cut off the output and the
    pooler is re-applied to the first real token, as the reference does.
    """

    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.backbone = backbone
        self.config = config
        model_config = backbone.config
        self.num_layers = model_config.num_hidden_layers
        self.compute_dtype = None  # float16/bfloat16 under mixed precision (training.precision.apply_precision)
        if config.mode == "prefix":
            self.prefix_encoder = PrefixEncoder(config.pre_seq_len, model_config.num_hidden_layers,
                                                model_config.num_attention_heads, model_config.hidden_size,
                                                config.prefix_projection, config.prefix_hidden_size,
                                                config.prefix_dropout)
        elif config.mode == "prompt":
            self.prompt_encoder = PromptEncoder(config.pre_seq_len, model_config.hidden_size,
                                                config.prompt_encoder_type)
        if config.mode != "finetune":
            freeze(backbone)

    def set_train(self, mode=True):
        super().set_train(mode)
        self.backbone.train(mode)
        return self

    def _sync_backbone_mode(self) -> None:
        """`set_train` on an outer head only sets the `training` flag of the Cells below it (it never calls
        our `set_train`), and the mindtorch backbone is no Cell: its mode follows ours at every call."""
        if self.backbone.training != self.training:
            self.backbone.train(self.training)

    @property
    def pooler(self):
        return getattr(self.backbone, "pooler", None)

    def _mixed_precision(self, enabled: bool = True):
        """With a `compute_dtype`: MindSpore's amp level "auto", MatMuls in that dtype and precision-sensitive
        ops in float32. `enabled=False` inside it runs the trainable encoders in float32."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        device_type = self.backbone.get_input_embeddings().weight.device.type
        return torch.autocast(device_type, dtype=self.compute_dtype, enabled=enabled)

    def _float32(self, tensor):
        """Backbone outputs as the float32 heads, logits and losses expect them."""
        return tensor if tensor is None or self.compute_dtype is None else tensor.float()

    def construct(self, input_ids, attention_mask, token_type_ids=None, position_ids=None):
        with self._mixed_precision():
            outputs = self._run_backbone(input_ids, attention_mask, token_type_ids, position_ids)
            if self.config.mode == "prompt":
                sequence_output = outputs.last_hidden_state[:, self.config.pre_seq_len:]
                pooled = self.pooler(sequence_output) if self.pooler is not None else None
            else:
                sequence_output = outputs.last_hidden_state
                pooled = outputs.pooler_output if self.pooler is not None else None
        return self._float32(sequence_output), self._float32(pooled)

    def decode(self, input_ids, attention_mask, position_ids, cache=None):
        """Incremental decoding for causal LMs: `(hidden (B, T, H) of the real tokens, cache)`.

        Without `cache` the virtual tokens are injected as in `construct` and the returned cache holds
        them followed by `input_ids`; with it only the new tokens run. `attention_mask` always covers
        every real token so far (B, T_total), `position_ids` (B, T) count from the first real token.
        """
        with self._mixed_precision():
            outputs = self._run_backbone(input_ids, attention_mask, None, position_ids, cache)
        hidden = outputs.last_hidden_state
        if cache is None and self.config.mode == "prompt":
            hidden = hidden[:, self.config.pre_seq_len:]
        return self._float32(hidden), outputs.past_key_values

    def _prefix(self, batch_size: int):
        """The prefix encoder's (2L, B, heads, P, head_dim) output as a mindtorch tensor."""
        with self._mixed_precision(enabled=False):
            prefix = self.prefix_encoder(batch_size)
        return to_mindtorch(prefix, like=self.backbone.get_input_embeddings().weight)

    def _prompts(self):
        """The prompt encoder's (P, H) output as a mindtorch tensor."""
        with self._mixed_precision(enabled=False):
            prompts = self.prompt_encoder()
        return to_mindtorch(prompts, like=self.backbone.get_input_embeddings().weight)

    def _run_backbone(self, input_ids, attention_mask, token_type_ids, position_ids, cache=None):
        """The backbone with the virtual tokens in front of the real ones.

        Explicit `position_ids` count from the first real token and are shifted by the number of virtual
        tokens: with a cache of length P (prefix) or P prompts in front, Hugging Face's default positions
        also start at P, so left-padded generation sees the positions training saw.
        """
        self._sync_backbone_mode()
        if self.config.mode == "prefix" and self.backbone.config.model_type in DEBERTA_MODEL_TYPES:
            # DeBERTa takes no cache: the prefix goes into its attention layers, the mask stays (B, T)
            prefixes = layer_prefixes(self._prefix(input_ids.shape[0]), self.num_layers)
            return forward_with_prefix(self.backbone, prefixes, input_ids, attention_mask, token_type_ids, position_ids)
        num_virtual = self.config.num_virtual_tokens
        if num_virtual:
            attention_mask = extend_attention_mask(attention_mask, num_virtual)
            if position_ids is not None:
                position_ids = position_ids + num_virtual
        inputs = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
        if cache is not None:
            return self.backbone(input_ids=input_ids, past_key_values=cache, **inputs)
        if self.config.mode == "prefix":
            cache = prefix_cache(self._prefix(input_ids.shape[0]), self.num_layers)
            return self.backbone(input_ids=input_ids, past_key_values=cache, **inputs)
        if self.config.mode == "prompt":
            return self._run_with_prompts(input_ids, **inputs)
        return self.backbone(input_ids=input_ids, **inputs)

    def _run_with_prompts(self, input_ids, attention_mask, token_type_ids, position_ids):
        batch, num_prompts = input_ids.shape[0], self.config.pre_seq_len
        prompts = self._prompts()  # (P, H)
        word_embeddings = self.backbone.get_input_embeddings()(input_ids)  # (B, T, H)
        prompts = prompts.unsqueeze(0).expand(batch, -1, -1).to(word_embeddings.dtype)
        inputs_embeds = torch.cat([prompts, word_embeddings], dim=1)  # (B, P+T, H)
        if token_type_ids is not None:
            token_type_ids = torch.cat([torch.zeros(batch, num_prompts, dtype=token_type_ids.dtype,
                                                    device=token_type_ids.device), token_type_ids], dim=1)
        if position_ids is not None:  # the prompts take positions 0..P-1
            prompt_positions = torch.arange(num_prompts, dtype=position_ids.dtype, device=position_ids.device)
            position_ids = torch.cat([prompt_positions.unsqueeze(0).expand(batch, -1), position_ids], dim=1)
        return self.backbone(inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                             attention_mask=attention_mask, position_ids=position_ids)

    def forward_with_template_prompts(self, input_ids, attention_mask, prompt_index):
        """Prompt mode with the prompts at a template's pseudo-token positions instead of in front
        (P-tuning v1 knowledge probing). `input_ids` hold any real token there (unk) for the embedding
        lookup; `place_prompts` then replaces those rows. Returns the hidden states (B, T, H) of all
        positions, pseudo ones included, so positions in `input_ids` index the output directly."""
        if self.config.mode != "prompt":
            raise ValueError(f"template prompts need mode 'prompt', this backbone is in mode {self.config.mode!r}")
        self._sync_backbone_mode()
        prompts = self._prompts()  # (n, H)
        inputs_embeds = place_prompts(self.backbone.get_input_embeddings()(input_ids), prompts, prompt_index)
        with self._mixed_precision():
            hidden = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        return self._float32(hidden)
