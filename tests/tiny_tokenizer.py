"""A tiny lower-casing WordPiece tokenizer (BertTokenizerFast from a vocab file written here, no hub),
and a tiny byte-level one standing in for RoBERTa's.

Whole words cover the fixtures' common words; everything else falls back to single characters
(`r ##i ##v ##e ##r`), so words really split into several sub-tokens.
"""

import json
import os
import string

from transformers import BertTokenizerFast, RobertaTokenizerFast
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """the a an of to in on at for by with from and or but is was are were be been it its he she they we i you
his her their this that which who what when where why how not no did does do has have had will can should
man woman boy girl children people city town river library book books school train road park bank play
playing ##ing ##ed ##s""".split()
CHARACTERS = list(string.ascii_lowercase + string.digits)


def vocabulary() -> list:
    pieces = SPECIAL + list(string.punctuation) + CHARACTERS + [f"##{c}" for c in CHARACTERS]
    return pieces + [word for word in WORDS if word not in pieces]


def build_tokenizer(directory: str) -> BertTokenizerFast:
    path = os.path.join(directory, "vocab.txt")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(vocabulary()) + "\n")
    return BertTokenizerFast(vocab_file=path, do_lower_case=True)


def build_byte_level_tokenizer(directory: str) -> RobertaTokenizerFast:
    """A RoBERTa-style byte-level BPE tokenizer without merges: every character of a word is one token
    (the first with the word's leading-space mark Ġ); `<s>`/`</s>` are its special tokens, so the text
    "[SEP]" is five ordinary tokens, as for roberta-large."""
    vocab = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])}
    for symbol in bytes_to_unicode().values():
        vocab.setdefault(symbol, len(vocab))
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
    return RobertaTokenizerFast(vocab_file=os.path.join(directory, "vocab.json"),
                                merges_file=os.path.join(directory, "merges.txt"), add_prefix_space=True)
