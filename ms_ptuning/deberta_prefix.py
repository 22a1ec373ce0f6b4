"""Key/value prefixes (P-tuning v2) inside DeBERTa's and DeBERTa-v2's disentangled attention.

Hugging Face's DeBERTa models take no `past_key_values`, so the prefix enters one level lower: while
`attention_prefixes` is active, each layer's `DisentangledSelfAttention` runs the forward below, which
  - attends over P prefix keys/values followed by the T real ones (prefixes get no q/v/k bias: they are
    already in the projected space, as in the reference),
  - adds the relative-position bias (c2p/p2c), computed on the real keys only, to the real keys' scores
    (the reference left-pads it with P zeros),
  - lets every real query attend to the prefix; padding queries stay fully masked.
The model itself runs unchanged on the real tokens with their (B, T) mask, so embeddings, relative positions
and DeBERTa-v2's convolution see exactly what they see without a prefix.

Both processes import this module: under mindnlp `torch` is mindtorch, in the torch reference it is real
torch. It therefore uses plain torch API only and must never import mindspore, mindnlp or other ms_ptuning
modules; in the mindnlp process import it after `ms_ptuning.backend`.
"""

import contextlib
import functools

import torch

DEBERTA_MODEL_TYPES = ("deberta", "deberta-v2")


def _scale(head_dim: int, scale_factor: int, dtype):
    # HF's `scaled_size_sqrt`, computed the same way
    return torch.sqrt(torch.tensor(head_dim, dtype=torch.float) * scale_factor).to(dtype=dtype)


def _join_scores(prefix_scores, real_scores, relative_bias):
    """(…, T, P) and (…, T, T) → (…, T, P+T). The relative-position bias applies to the real keys only:
    prefix keys have no position (the reference pads the bias with P zeros). Scores against the real keys
    are computed exactly as Hugging Face does, so an empty prefix reproduces the model bit for bit."""
    return torch.cat([prefix_scores, real_scores + relative_bias], dim=-1)


def _masked_softmax(scores, attention_mask, num_prefix: int):
    """scores (B, heads, T, P+T); attention_mask (B, 1, T, T), the model's query×key mask of the real tokens.

    A query row may attend to the prefix iff it attends to anything, i.e. iff it is a real token: the
    reference builds the (P+T)² mask from cat(ones(P), mask) and keeps the last T rows, whose prefix
    columns equal the row's own mask value.
    """
    mask = attention_mask.bool()
    rows = mask.any(dim=-1, keepdim=True)  # (B, 1, T, 1)
    mask = torch.cat([rows.expand(rows.shape[:-1] + (num_prefix,)), mask], dim=-1)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.nn.functional.softmax(scores, dim=-1)


def _fold_heads(prefix):
    """(B, heads, P, d) → (B·heads, P, d), DeBERTa-v2's layout; sizes spelled out because mindtorch cannot
    infer a -1 dimension of an empty (P = 0) tensor."""
    batch, heads, length, head_dim = prefix.shape
    return prefix.reshape(batch * heads, length, head_dim)


def _check_query_states(query_states):
    if query_states is not None:
        raise ValueError("DeBERTa prefixes do not support query_states (enhanced mask decoder, z_steps > 1)")


def _attention_v1(self, key_prefix, value_prefix, hidden_states, attention_mask, output_attentions=False,
                  query_states=None, relative_pos=None, rel_embeddings=None):
    """transformers 4.56 `deberta.DisentangledSelfAttention.forward` with prefixes; key/value_prefix
    (B, heads, P, head_dim)."""
    _check_query_states(query_states)
    num_prefix = key_prefix.size(-2)
    query, key, value = self.transpose_for_scores(self.in_proj(hidden_states)).chunk(3, dim=-1)  # (B, heads, T, d)
    query = query + self.transpose_for_scores(self.q_bias[None, None, :])
    value = value + self.transpose_for_scores(self.v_bias[None, None, :])
    scale_factor = 1 + len(self.pos_att_type)
    query = query / _scale(query.size(-1), scale_factor, query.dtype)
    relative_bias = 0
    if self.relative_attention and rel_embeddings is not None and relative_pos is not None:
        relative_bias = self.disentangled_att_bias(query, key, relative_pos, self.pos_dropout(rel_embeddings),
                                                   scale_factor)
    scores = _join_scores(torch.matmul(query, key_prefix.transpose(-1, -2)),
                          torch.matmul(query, key.transpose(-1, -2)), relative_bias)  # (B, heads, T, P+T)
    if self.head_logits_proj is not None:
        scores = self.head_logits_proj(scores.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    probs = self.dropout(_masked_softmax(scores, attention_mask, num_prefix))
    if self.head_weights_proj is not None:
        probs = self.head_weights_proj(probs.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    context = torch.matmul(probs, torch.cat([value_prefix, value], dim=2)).permute(0, 2, 1, 3).contiguous()
    return context.view(context.size()[:-2] + (-1,)), (probs if output_attentions else None)


def _attention_v2(self, key_prefix, value_prefix, hidden_states, attention_mask, output_attentions=False,
                  query_states=None, relative_pos=None, rel_embeddings=None):
    """transformers 4.56 `deberta_v2.DisentangledSelfAttention.forward` with prefixes; heads are folded into
    the batch dimension there: (B·heads, T, d)."""
    _check_query_states(query_states)
    heads, num_prefix = self.num_attention_heads, key_prefix.size(-2)
    query = self.transpose_for_scores(self.query_proj(hidden_states), heads)
    key = self.transpose_for_scores(self.key_proj(hidden_states), heads)
    value = self.transpose_for_scores(self.value_proj(hidden_states), heads)
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    scale = _scale(query.size(-1), scale_factor, query.dtype)
    relative_bias = 0
    if self.relative_attention:
        relative_bias = self.disentangled_attention_bias(query, key, relative_pos, self.pos_dropout(rel_embeddings),
                                                         scale_factor)
    scores = _join_scores(torch.bmm(query, _fold_heads(key_prefix).transpose(-1, -2) / scale),
                          torch.bmm(query, key.transpose(-1, -2) / scale), relative_bias)  # (B·heads, T, P+T)
    scores = scores.view(-1, heads, scores.size(-2), scores.size(-1))  # (B, heads, T, P+T)
    probs = self.dropout(_masked_softmax(scores, attention_mask, num_prefix))
    all_values = torch.cat([_fold_heads(value_prefix), value], dim=1)  # (B·heads, P+T, d)
    context = torch.bmm(probs.view(-1, probs.size(-2), probs.size(-1)), all_values)
    context = context.view(-1, heads, context.size(-2), context.size(-1)).permute(0, 2, 1, 3).contiguous()
    return context.view(context.size()[:-2] + (-1,)), (probs if output_attentions else None)


_PREFIXED_ATTENTION = {"deberta": _attention_v1, "deberta-v2": _attention_v2}


@contextlib.contextmanager
def attention_prefixes(backbone, layer_prefixes):
    """Within the block, layer l of `backbone` (a DebertaModel or DebertaV2Model) attends to
    layer_prefixes[l] = (key, value), each (B, heads, P, head_dim), before its real tokens."""
    model_type = backbone.config.model_type
    if model_type not in _PREFIXED_ATTENTION:
        raise ValueError(f"attention prefixes support {DEBERTA_MODEL_TYPES}, not {model_type!r}")
    attentions = [layer.attention.self for layer in backbone.encoder.layer]
    if len(layer_prefixes) != len(attentions):
        raise ValueError(f"{len(layer_prefixes)} layer prefixes for a {len(attentions)}-layer {model_type} model")
    for attention, (key, value) in zip(attentions, layer_prefixes):
        # an instance attribute shadows the class's forward for this call only; `del` restores it
        attention.forward = functools.partial(_PREFIXED_ATTENTION[model_type], attention, key, value)
    try:
        yield
    finally:
        for attention in attentions:
            del attention.forward


def forward_with_prefix(backbone, layer_prefixes, input_ids, attention_mask, token_type_ids=None, position_ids=None):
    """The DeBERTa backbone's output for the real tokens (B, T) and their (B, T) mask, every layer seeing its
    prefix.

    Absolute positions continue after the prefix, as in the reference's DeBERTa embeddings: `position_ids`
    (default 0 … T-1, counted from the first real token) are shifted by P. They matter only for models with
    `position_biased_input`; the relative positions are those of the real tokens.
    """
    num_prefix = layer_prefixes[0][0].size(-2)
    if position_ids is None:
        position_ids = torch.arange(input_ids.size(1), dtype=torch.long, device=input_ids.device).unsqueeze(0)
    with attention_prefixes(backbone, layer_prefixes):
        return backbone(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids + num_prefix)
