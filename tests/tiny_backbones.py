"""Tiny randomly initialised encoder configs (2 layers, hidden 64) for the four supported encoder families.

DeBERTa: relative attention with c2p and p2c; DeBERTa-v2 additionally with log buckets, shared attention
keys, layer-normed relative embeddings and the convolution layer, so every path of both attentions runs.
"""

from ms_ptuning.backend import torch  # noqa: F401  (mindnlp before transformers)
import transformers

SIZES = dict(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def tiny_config(model_type: str, **overrides):
    if model_type == "bert":
        return transformers.BertConfig(**{**SIZES, "max_position_embeddings": 64, **overrides})
    if model_type == "roberta":  # positions start after padding_idx 1
        return transformers.RobertaConfig(**{**SIZES, "max_position_embeddings": 66, "pad_token_id": 1, **overrides})
    if model_type == "deberta":
        return transformers.DebertaConfig(**{**SIZES, "max_position_embeddings": 64, "relative_attention": True,
                                             "pos_att_type": ["c2p", "p2c"], **overrides})
    if model_type == "deberta-v2":
        return transformers.DebertaV2Config(**{**SIZES, "max_position_embeddings": 64, "relative_attention": True,
                                               "pos_att_type": ["c2p", "p2c"], "position_buckets": 16,
                                               "share_att_key": True, "norm_rel_ebd": "layer_norm",
                                               "position_biased_input": False, "conv_kernel_size": 3, **overrides})
    raise ValueError(f"no tiny config for {model_type!r}")
