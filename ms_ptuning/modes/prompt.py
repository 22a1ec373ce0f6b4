"""P-tuning (continuous prompts): trainable prompt embeddings in front of the word embeddings, or at a
template's pseudo-token positions (P-tuning v1's knowledge probing)."""

from mindspore import ops

from ..config import PTuningConfig
from ..encoders import PromptEncoder
from .base import PromptedBackbone, initializer_range, virtual_positions


class PromptTuning(PromptedBackbone):
    """P prompts are prepended to the word embeddings; the backbone adds position and token-type embeddings
    once over the whole P + T sequence (P-tuning v1 and peft do this). The prompts' outputs are cut off and
    the pooler is re-applied to the first real token, as the reference does.

    Init: the bare table (THUDM's P-tuning v2 `--prompt`) starts at N(0, initializer_range) like THUDM's; the
    LSTM/MLP encoders are P-tuning v1's and keep torch's defaults, their table N(0, 1) included."""

    def __init__(self, backbone, config: PTuningConfig, compute_dtype=None):
        super().__init__(backbone, config, compute_dtype)
        model_config = self.backbone.config
        table_std = initializer_range(model_config) if config.prompt_encoder_type == "embedding" else 1.0
        width = getattr(model_config, "word_embed_proj_dim", None) or model_config.hidden_size  # OPT's embeds narrower
        self.prompt_encoder = PromptEncoder(config.pre_seq_len, width, config.prompt_encoder_type, table_std)
        self.prompt_positions = virtual_positions(config.pre_seq_len)

    def backbone_inputs(self, input_ids, attention_mask, token_type_ids, position_ids) -> tuple:
        words = self.backbone.embed_words(input_ids)  # (B, T, H)
        batch, count = words.shape[0], self.num_virtual_tokens
        prompts = ops.cast(ops.expand_dims(self.prompt_encoder(), 0), words.dtype)  # (1, P, H)
        inputs_embeds = ops.concat((ops.broadcast_to(prompts, (batch, count, words.shape[2])), words), 1)
        if token_type_ids is not None:  # the prompts are of the first segment
            token_type_ids = ops.concat((ops.zeros((batch, count), token_type_ids.dtype), token_type_ids), 1)
        attention_mask, position_ids = self.behind_virtual_tokens(attention_mask, position_ids)
        if position_ids is not None:  # the prompts take positions 0 … P-1
            prompt_positions = ops.broadcast_to(ops.cast(self.prompt_positions, position_ids.dtype), (batch, count))
            position_ids = ops.concat((prompt_positions, position_ids), 1)
        return None, inputs_embeds, attention_mask, token_type_ids, position_ids, None

    def trim(self, sequence_output, pooled) -> tuple:
        count = self.num_virtual_tokens
        real = ops.narrow(sequence_output, 1, count, sequence_output.shape[1] - count)
        return real, self.backbone.pool(real)

    def forward_with_template_prompts(self, input_ids, attention_mask, prompt_index):
        """The prompts at a template's pseudo-token positions instead of in front (P-tuning v1's knowledge
        probing): `prompt_index` (B, T) holds k at the k-th pseudo token and -1 at real tokens, whose
        `input_ids` there are any real token (unk) for the lookup. Returns the hidden states (B, T, H) of all
        positions, pseudo ones included, so positions in `input_ids` index the output directly."""
        words = self.backbone.embed_words(input_ids)
        rows = ops.gather(ops.cast(self.prompt_encoder(), words.dtype), ops.clamp(prompt_index, min=0), 0)
        inputs_embeds = ops.where(ops.expand_dims(ops.ge(prompt_index, 0), -1), rows, words)
        hidden, _ = self.backbone(None, inputs_embeds, attention_mask)
        return hidden
