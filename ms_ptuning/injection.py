"""The one place where prefixes (P-tuning v2) and prompts (P-tuning v1) enter a backbone.

Every head wraps its backbone in `PromptedBackbone` and only ever sees the hidden states of the real tokens.
"""

from mindspore import nn

from .backend import to_mindtorch, torch
from .config import PTuningConfig
from .encoders import PrefixEncoder, PromptEncoder
from .models.backbone import freeze
from transformers.cache_utils import DynamicCache


def prefix_cache(prefix, num_layers: int) -> DynamicCache:
    """(2L, B, heads, P, head_dim) → a cache holding each layer's key/value prefix.

    The cache is extended in place by the forward pass, so a fresh one is built for every call.
    """
    return DynamicCache.from_legacy_cache(tuple((prefix[2 * i], prefix[2 * i + 1]) for i in range(num_layers)))


def extend_attention_mask(attention_mask, num_virtual_tokens: int):
    """(B, T) → (B, P+T): the prefix/prompt positions are always attended to."""
    ones = torch.ones(attention_mask.shape[0], num_virtual_tokens, dtype=attention_mask.dtype,
                      device=attention_mask.device)
    return torch.cat([ones, attention_mask], dim=1)


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

    @property
    def pooler(self):
        return getattr(self.backbone, "pooler", None)

    def construct(self, input_ids, attention_mask, token_type_ids=None):
        mode = self.config.mode
        anchor = self.backbone.get_input_embeddings().weight  # device reference for bridged tensors
        if mode == "prefix":
            prefix = to_mindtorch(self.prefix_encoder(input_ids.shape[0]), like=anchor)
            outputs = self.backbone(input_ids=input_ids, token_type_ids=token_type_ids,
                                    attention_mask=extend_attention_mask(attention_mask, self.config.pre_seq_len),
                                    past_key_values=prefix_cache(prefix, self.num_layers))
            pooled = outputs.pooler_output if self.pooler is not None else None
            return outputs.last_hidden_state, pooled
        if mode == "prompt":
            return self._forward_with_prompts(input_ids, attention_mask, token_type_ids, anchor)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        pooled = outputs.pooler_output if self.pooler is not None else None
        return outputs.last_hidden_state, pooled

    def _forward_with_prompts(self, input_ids, attention_mask, token_type_ids, anchor):
        batch, num_prompts = input_ids.shape[0], self.config.pre_seq_len
        prompts = to_mindtorch(self.prompt_encoder(), like=anchor)  # (P, H)
        word_embeddings = self.backbone.get_input_embeddings()(input_ids)  # (B, T, H)
        prompts = prompts.unsqueeze(0).expand(batch, -1, -1).to(word_embeddings.dtype)
        inputs_embeds = torch.cat([prompts, word_embeddings], dim=1)  # (B, P+T, H)
        if token_type_ids is not None:
            token_type_ids = torch.cat([torch.zeros(batch, num_prompts, dtype=token_type_ids.dtype,
                                                    device=token_type_ids.device), token_type_ids], dim=1)
        outputs = self.backbone(inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                                attention_mask=extend_attention_mask(attention_mask, num_prompts))
        sequence_output = outputs.last_hidden_state[:, num_prompts:]
        pooled = self.pooler(sequence_output) if self.pooler is not None else None
        return sequence_output, pooled
