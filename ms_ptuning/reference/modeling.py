"""Reference encoders and heads in real torch, parameter-for-parameter the same as the MindSpore ones."""

import torch
from torch import nn
from torch.nn import functional as F
from transformers.cache_utils import DynamicCache
from transformers.models.deberta.modeling_deberta import ContextPooler

from ..config import PTuningConfig
from ..deberta_prefix import DEBERTA_MODEL_TYPES, forward_with_prefix


class PrefixEncoder(nn.Module):
    def __init__(self, pre_seq_len, num_layers, num_heads, hidden_size, projection=False,
                 projection_hidden_size=512, dropout=0.0):
        super().__init__()
        self.pre_seq_len, self.num_layers, self.num_heads = pre_seq_len, num_layers, num_heads
        self.head_dim = hidden_size // num_heads
        self.projection = projection
        out_size = 2 * num_layers * hidden_size
        if projection:
            self.embedding = nn.Embedding(pre_seq_len, hidden_size)
            self.transform = nn.ModuleList([nn.Linear(hidden_size, projection_hidden_size),
                                            nn.Linear(projection_hidden_size, out_size)])
        else:
            self.embedding = nn.Embedding(pre_seq_len, out_size)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("positions", torch.arange(pre_seq_len), persistent=False)

    def forward(self, batch_size):
        table = self.embedding(self.positions)
        if self.projection:
            table = self.transform[1](torch.tanh(self.transform[0](table)))
        prefix = table.unsqueeze(0).expand(batch_size, -1, -1)
        prefix = prefix.reshape(batch_size, self.pre_seq_len, 2 * self.num_layers, self.num_heads, self.head_dim)
        return self.dropout(prefix).permute(2, 0, 3, 1, 4)


class PromptEncoder(nn.Module):
    def __init__(self, num_virtual_tokens, hidden_size, encoder_type="lstm"):
        super().__init__()
        self.encoder_type = encoder_type
        self.embedding = nn.Embedding(num_virtual_tokens, hidden_size)
        if encoder_type == "lstm":
            self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=2, bidirectional=True, batch_first=True)
        if encoder_type in ("lstm", "mlp"):
            self.mlp = nn.ModuleList([nn.Linear(hidden_size, hidden_size), nn.Linear(hidden_size, hidden_size)])
        self.register_buffer("positions", torch.arange(num_virtual_tokens), persistent=False)

    def forward(self):
        prompts = self.embedding(self.positions)
        if self.encoder_type == "lstm":
            prompts = self.lstm(prompts.unsqueeze(0))[0].squeeze(0)
        if self.encoder_type in ("lstm", "mlp"):
            prompts = self.mlp[1](F.relu(self.mlp[0](prompts)))
        return prompts


def extend_attention_mask(attention_mask, n):
    return torch.cat([attention_mask.new_ones(attention_mask.shape[0], n), attention_mask], dim=1)


class PromptedBackbone(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.backbone, self.config = backbone, config
        mc = backbone.config
        self.num_layers = mc.num_hidden_layers
        if config.mode == "prefix":
            self.prefix_encoder = PrefixEncoder(config.pre_seq_len, mc.num_hidden_layers, mc.num_attention_heads,
                                                mc.hidden_size, config.prefix_projection,
                                                config.prefix_hidden_size, config.prefix_dropout)
        elif config.mode == "prompt":
            self.prompt_encoder = PromptEncoder(config.pre_seq_len, mc.hidden_size, config.prompt_encoder_type)
        if config.mode != "finetune":
            for p in backbone.parameters():
                p.requires_grad = False

    @property
    def pooler(self):
        return getattr(self.backbone, "pooler", None)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        mode, n = self.config.mode, self.config.pre_seq_len
        if mode == "prefix":
            prefix = self.prefix_encoder(input_ids.shape[0])
            layers = tuple((prefix[2 * i], prefix[2 * i + 1]) for i in range(self.num_layers))
            if self.backbone.config.model_type in DEBERTA_MODEL_TYPES:
                out = forward_with_prefix(self.backbone, layers, input_ids, attention_mask, token_type_ids)
                return out.last_hidden_state, None
            cache = DynamicCache.from_legacy_cache(layers)
            out = self.backbone(input_ids=input_ids, token_type_ids=token_type_ids,
                                attention_mask=extend_attention_mask(attention_mask, n), past_key_values=cache)
            return out.last_hidden_state, (out.pooler_output if self.pooler is not None else None)
        if mode == "prompt":
            batch = input_ids.shape[0]
            words = self.backbone.get_input_embeddings()(input_ids)
            embeds = torch.cat([self.prompt_encoder().unsqueeze(0).expand(batch, -1, -1), words], dim=1)
            if token_type_ids is not None:
                token_type_ids = torch.cat([token_type_ids.new_zeros(batch, n), token_type_ids], dim=1)
            out = self.backbone(inputs_embeds=embeds, token_type_ids=token_type_ids,
                                attention_mask=extend_attention_mask(attention_mask, n))
            seq = out.last_hidden_state[:, n:]
            return seq, (self.pooler(seq) if self.pooler is not None else None)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state, (out.pooler_output if self.pooler is not None else None)


def sequence_classification_loss(logits, labels, problem_type):
    if problem_type == "regression":
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits, labels.long())
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def pooler_for(backbone):
    """None for backbones with a pooler; DeBERTa's heads pool with HF's ContextPooler."""
    if getattr(backbone, "pooler", None) is not None:
        return None
    if backbone.config.model_type in DEBERTA_MODEL_TYPES:
        return ContextPooler(backbone.config)
    raise ValueError(f"{type(backbone).__name__} has no pooler")


def drop_pooler(backbone):
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    return backbone


class SequenceClassifier(nn.Module):
    def __init__(self, backbone, config: PTuningConfig):
        super().__init__()
        self.config = config
        self.pooler = pooler_for(backbone)
        self.encoder = PromptedBackbone(backbone, config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        sequence, pooled = self.encoder(input_ids, attention_mask, token_type_ids)
        if self.pooler is not None:
            pooled = self.pooler(sequence)
        logits = self.classifier(self.dropout(pooled))
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config.problem_type)
        return loss, logits


from .causal_lm import CausalLM  # noqa: E402  (built on the PromptedBackbone above)
from .lama import HEADS as LAMA_HEADS  # noqa: E402
from .pretraining_heads import HEADS as PRETRAINING_HEADS  # noqa: E402
from .heads import HEADS as TASK_HEADS  # noqa: E402

HEADS = {"sequence_classification": SequenceClassifier, "causal_lm": CausalLM}
HEADS.update(LAMA_HEADS)
HEADS.update(PRETRAINING_HEADS)
HEADS.update(TASK_HEADS)
