"""Queries for knowledge probing: P-tuning templates with pseudo tokens, and hand-written relation templates.

A P-tuning template `(t0, t1, t2)` counts the pseudo tokens around the subject and the answer slot:
- masked LM (BERT): `[CLS] P×t0 [MASK] P×t1 subject P×t2 [SEP]`, with "." in place of the last block when
  t2 = 0 (the layout of the THUDM/P-tuning LAMA code); the answer is read at [MASK].
- causal LM (GPT-2): `P×t0 subject P×t1`, the template taken as (t0, t1, 0) as the reference does; the
  answer is the next token, read at the last position.
Pseudo positions hold the unk id (the embedding lookup needs a real id) and `prompt_index` k ≥ 0 for the
k-th pseudo token, whose embedding the prompt encoder's row k replaces; real tokens have -1.

A manual template ("[X] was born in [Y] .") gives the baseline: subject for [X], [MASK] for [Y] (masked
LM) or the text before [Y] (causal LM, answer = next token). It has no pseudo tokens.
"""

import re
from dataclasses import dataclass

MASKED, CAUSAL = "masked", "causal"
MODEL_KINDS = {"bert": MASKED, "gpt2": CAUSAL}


def model_kind(model_type: str) -> str:
    if model_type not in MODEL_KINDS:
        raise ValueError(f"LAMA probing supports {sorted(MODEL_KINDS)} models, got model_type {model_type!r}")
    return MODEL_KINDS[model_type]


def parse_template(text) -> tuple:
    """"(3,3,3)", "3,3,3" or a tuple → (t0, t1, t2) of non-negative ints (never `eval`)."""
    if isinstance(text, str):
        parts = [part.strip() for part in text.strip().strip("()").split(",")]
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(f"template must look like '(3,3,3)': three non-negative integers, got {text!r}")
        return tuple(int(part) for part in parts)
    template = tuple(text)
    if len(template) != 3 or not all(isinstance(t, int) and t >= 0 for t in template):
        raise ValueError(f"template must be three non-negative integers, got {text!r}")
    return template


def effective_template(template: tuple, kind: str) -> tuple:
    """The template as the model uses it: causal LMs drop the block after the subject (t2 → 0)."""
    return (template[0], template[1], 0) if kind == CAUSAL else template


@dataclass
class Query:
    input_ids: list
    prompt_index: list  # per position: k for the k-th pseudo token, -1 for a real token
    answer_position: int  # where the logits over the vocabulary are read


class QueryBuilder:
    """Builds the query of one subject for a tokenizer, a model kind and either a P-tuning template
    (`template`) or a hand-written relation template (`manual`)."""

    def __init__(self, tokenizer, kind: str, template=None, manual: str = None):
        if (template is None) == (manual is None):
            raise ValueError("give exactly one of a P-tuning template or a manual template")
        if kind not in (MASKED, CAUSAL):
            raise ValueError(f"kind must be {MASKED!r} or {CAUSAL!r}, got {kind!r}")
        if kind == MASKED and tokenizer.mask_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no mask token; a masked-LM query needs one")
        if tokenizer.unk_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no unk token to stand in for pseudo tokens")
        if manual is not None and ("[X]" not in manual or "[Y]" not in manual):
            raise ValueError(f"a manual template needs [X] and [Y], got {manual!r}")
        self.tokenizer, self.kind, self.manual = tokenizer, kind, manual
        self.template = None if template is None else effective_template(parse_template(template), kind)
        if self.template is not None and sum(self.template) == 0:
            raise ValueError(f"template {self.template} has no pseudo tokens for {kind} models")

    @property
    def num_pseudo_tokens(self) -> int:
        return 0 if self.template is None else sum(self.template)

    def words(self, text: str) -> list:
        """Token ids of `text` as a word inside a sentence (leading space: GPT-2 marks it, BERT ignores it)."""
        return self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(" " + text))

    def build(self, subject: str) -> Query:
        if self.manual is not None:
            return self._manual(subject)
        pieces = self._ptuning_pieces(subject)
        input_ids, prompt_index, answer_position = [], [], None
        for piece in pieces:
            if piece == "answer":
                answer_position = len(input_ids)
                input_ids.append(self.tokenizer.mask_token_id)
                prompt_index.append(-1)
            elif isinstance(piece, int):  # a block of that many pseudo tokens
                first = max(prompt_index + [-1]) + 1
                input_ids.extend([self.tokenizer.unk_token_id] * piece)
                prompt_index.extend(range(first, first + piece))
            else:
                input_ids.extend(piece)
                prompt_index.extend([-1] * len(piece))
        if answer_position is None:  # causal: the next token after the query
            answer_position = len(input_ids) - 1
        return Query(input_ids, prompt_index, answer_position)

    def _ptuning_pieces(self, subject: str) -> list:
        t0, t1, t2 = self.template
        subject_ids = self.words(subject)
        if self.kind == CAUSAL:
            return [t0, subject_ids, t1]
        tokenizer = self.tokenizer
        closing = t2 if t2 > 0 else tokenizer.convert_tokens_to_ids(["."])
        return [[tokenizer.cls_token_id], t0, "answer", t1, subject_ids, closing, [tokenizer.sep_token_id]]

    def _manual(self, subject: str) -> Query:
        text = self.manual.replace("[X]", subject)
        if self.kind == CAUSAL:
            # everything before [Y]; trailing spaces stripped, else GPT-2 would end on a lone space token
            input_ids = self.words(re.sub(r"\[Y\].*", "", text).rstrip())
            return Query(input_ids, [-1] * len(input_ids), len(input_ids) - 1)
        input_ids = self.tokenizer(" " + text.replace("[Y]", self.tokenizer.mask_token))["input_ids"]
        masks = [i for i, token in enumerate(input_ids) if token == self.tokenizer.mask_token_id]
        if len(masks) != 1:
            raise ValueError(f"manual template {self.manual!r} with subject {subject!r} has {len(masks)} "
                             "mask tokens after tokenization, expected 1")
        return Query(input_ids, [-1] * len(input_ids), masks[0])
