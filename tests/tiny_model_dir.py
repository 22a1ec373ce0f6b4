"""A local model directory as users pass it to `ms_ptuning.run`: config.json, model.safetensors and the
tiny WordPiece tokenizer's files, for a 2-layer hidden-32 random BERT."""

import os

from ms_ptuning.backend import seed_everything
from ms_ptuning.backbones import build_backbone
from tiny_tokenizer import build_tokenizer
import transformers


def save_tiny_bert(directory: str, max_position_embeddings: int = 64, safe_serialization: bool = True) -> str:
    seed_everything(0)
    os.makedirs(directory, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    tokenizer.save_pretrained(directory)
    config = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=37,
                                     max_position_embeddings=max_position_embeddings)
    build_backbone(config).save_pretrained(directory, safe_serialization=safe_serialization)
    return directory
