"""LAMA / T-REx facts from local jsonl, the shared-vocabulary filter, and encoding into datasets.

Layout of a data directory (that of LAMA and of the AutoPrompt T-REx split used by THUDM/P-tuning):
- `relations.jsonl`: one line per relation, {"relation": "P19", "template": "[X] was born in [Y] ."};
- facts of a relation in `<relation>/{train,dev,test}.jsonl`, or `fact-retrieval/original/<relation>/...`:
  one line per fact, {"sub_label": "Dante", "obj_label": "Florence"} plus optionally "predicate_id" or
  "relation" (checked against the relation) and any other fields (ignored).

A fact can only be scored when its object is one token of the model. As the reference (THUDM/P-tuning,
`vocab_strategy=shared`), predictions are ranked over a vocabulary shared by the models compared, and a
fact whose object is outside it is dropped. The shared vocabulary is either read from a file in the
reference's format (`29k-vocab.json`: a JSON object {model name: [tokens in that model's spelling]}, e.g.
"London" for BERT, "ĠLondon" for GPT-2; a plain JSON list of words is accepted too) or built as the words
that are one whole-word token in every tokenizer given; the filter applies both when both are given.
Every dropped fact is counted under its reason; nothing is scored against a truncated or unknown object.
"""

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..data.dataset import ArrayDataset

SPLITS = ("train", "dev", "test")
REFERENCE_VOCAB_KEYS = {"gpt2": "gpt2-xl"}  # the list the reference ranks every GPT-2 size over


@dataclass(frozen=True)
class Fact:
    subject: str
    object: str
    relation: str
    source: str  # "file:line", for messages


def read_jsonl(path: str) -> list:
    """[(line number, dict)] of the non-blank lines; malformed lines raise naming file and line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            records.append((number, record))
    return records


def required_text(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def load_relations(path: str) -> dict:
    """relation id → hand-written template with [X] (subject) and [Y] (object)."""
    relations = {}
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        relation, template = required_text(record, "relation", where), required_text(record, "template", where)
        if "[X]" not in template or "[Y]" not in template:
            raise ValueError(f"{where}: field 'template' needs [X] and [Y], got {template!r}")
        relations[relation] = template
    return relations


def load_facts(path: str, relation: str) -> list:
    facts = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        stated = record.get("predicate_id", record.get("relation"))
        if stated is not None and stated != relation:
            raise ValueError(f"{where}: fact of relation {stated!r} in the file of relation {relation!r}")
        facts.append(Fact(required_text(record, "sub_label", where), required_text(record, "obj_label", where),
                          relation, where))
    return facts


def relation_dir(data_dir: str, relation: str) -> str:
    for candidate in (os.path.join(data_dir, relation), os.path.join(data_dir, "fact-retrieval", "original", relation)):
        if os.path.isdir(candidate):
            return candidate
    raise FileNotFoundError(f"no facts for relation {relation!r}: neither {data_dir}/{relation}/ nor "
                            f"{data_dir}/fact-retrieval/original/{relation}/ exists")


def load_split(data_dir: str, relation: str, split: str) -> list:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return load_facts(os.path.join(relation_dir(data_dir, relation), f"{split}.jsonl"), relation)


def list_relations(data_dir: str) -> list:
    """Relations of `relations.jsonl` that have facts in `data_dir`, in file order."""
    relations = load_relations(os.path.join(data_dir, "relations.jsonl"))
    found = []
    for relation in relations:
        try:
            relation_dir(data_dir, relation)
        except FileNotFoundError:
            continue
        found.append(relation)
    return found


def load_qa_wikidata(path: str, relation: str = "qa_wikidata") -> list:
    """Facts from BIG-bench's `qa_wikidata` task.json ({"examples": [{"input": cloze text, "target": answer
    or [answers]}]}): the cloze text is the subject and the first answer the object, so the manual template
    for them is "[X] [Y] ." and P-tuning learns prompts around the whole cloze statement."""
    with open(path, encoding="utf-8") as handle:
        try:
            task = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(examples, list):
        raise ValueError(f"{path}: expected a BIG-bench task with an 'examples' list")
    facts = []
    for number, example in enumerate(examples):
        where = f"{path}: examples[{number}]"
        target = example.get("target") if isinstance(example, dict) else None
        if isinstance(target, list):
            target = target[0] if target else None
        facts.append(Fact(required_text(example, "input", where), required_text({"target": target}, "target", where),
                          relation, where))
    return facts


@dataclass
class DropReport:
    """How many facts the filter kept, and how many it dropped for which reason."""

    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # reason → first few objects dropped for it

    def add(self, other: "DropReport") -> "DropReport":
        self.total += other.total
        self.kept += other.kept
        self.dropped.update(other.dropped)
        for reason, objects in other.examples.items():
            self.examples.setdefault(reason, []).extend(objects[:3])
        return self

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason} (e.g. {', '.join(self.examples[reason][:3])})"
                            for reason, count in sorted(self.dropped.items()))
        return f"kept {self.kept}/{self.total} facts" + (f"; dropped {reasons}" if reasons else "")

    def to_dict(self) -> dict:
        return {"total": self.total, "kept": self.kept, "dropped": dict(self.dropped)}


def read_vocab_file(path: str, tokenizer, model_dir: str, model_type: str, key: str = None) -> tuple:
    """(words, key): the shared vocabulary for the probed model. From the reference's {model name:
    [tokens]} object the list `key` (default: the one named like `model_dir`, else the one the reference
    uses for the model type), spelled as words; or a plain list of words (key None)."""
    with open(path, encoding="utf-8") as handle:
        try:
            vocab = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
    if isinstance(vocab, list) and all(isinstance(word, str) for word in vocab):
        return vocab, None
    if not isinstance(vocab, dict) or not all(isinstance(tokens, list) for tokens in vocab.values()):
        raise ValueError(f"{path}: expected the reference's {{model name: [tokens]}} object or a list of words")
    if key is None:
        name = os.path.basename(os.path.normpath(model_dir))
        key = name if name in vocab else REFERENCE_VOCAB_KEYS.get(model_type)
    if key not in vocab:
        raise ValueError(f"{path}: no token list for {model_dir} (model type {model_type}); choose one of "
                         f"{', '.join(sorted(vocab))} with --vocab_key")
    known = tokenizer.get_vocab()
    tokens = [token for token in vocab[key] if token in known]
    if not tokens:
        raise ValueError(f"{path}: none of the {len(vocab[key])} tokens of {key!r} is in {model_dir}'s "
                         "vocabulary (another model's list? see --vocab_key)")
    return [tokenizer.convert_tokens_to_string([token]).strip() for token in tokens], key


class VocabFilter:
    """Single-token objects in every given tokenizer ({name: tokenizer}) and, if given, in `allowed_words`
    (the shared vocabulary read from a file)."""

    def __init__(self, tokenizers: dict, allowed_words=None):
        if not tokenizers:
            raise ValueError("the vocabulary filter needs at least one tokenizer")
        self.tokenizers = tokenizers
        self.allowed_words = None if allowed_words is None else set(allowed_words)

    @staticmethod
    def token_id(tokenizer, word: str):
        """The id of `word` as one whole-word token, or why it is not one ("multi-token" / "unknown")."""
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" " + word))
        if len(ids) != 1:
            return None, "multi-token"
        if ids[0] == tokenizer.unk_token_id or ids[0] in tokenizer.all_special_ids:
            return None, "unknown"
        return ids[0], None

    def drop_reason(self, word: str):
        if self.allowed_words is not None and word not in self.allowed_words:
            return "not in the shared vocabulary"
        for name, tokenizer in self.tokenizers.items():
            _, problem = self.token_id(tokenizer, word)
            if problem:
                return f"{problem} in {name}"
        return None

    def filter(self, facts: list):
        """(kept facts, DropReport)."""
        report = DropReport(total=len(facts))
        kept = []
        for fact in facts:
            reason = self.drop_reason(fact.object)
            if reason is None:
                kept.append(fact)
                continue
            report.dropped[reason] += 1
            report.examples.setdefault(reason, [])
            if fact.object not in report.examples[reason]:
                report.examples[reason].append(fact.object)
        report.kept = len(kept)
        return kept, report

    def candidate_ids(self, name: str) -> np.ndarray:
        """Ids in tokenizer `name` of every word that passes the filter: the answers ranked at scoring time."""
        tokenizer = self.tokenizers[name]
        ids = set()
        for token, token_id in tokenizer.get_vocab().items():
            if token_id in tokenizer.all_special_ids:
                continue
            word = tokenizer.convert_tokens_to_string([token]).strip()
            if word and self.token_id(tokenizer, word)[0] == token_id and self.drop_reason(word) is None:
                ids.add(token_id)
        return np.array(sorted(ids), dtype=np.int64)


def encode_facts(facts: list, builder, tokenizer) -> ArrayDataset:
    """Facts → columns input_ids / attention_mask / prompt_index (N, T), answer_position / labels (N,),
    right-padded. Objects must have passed the `VocabFilter` (raises otherwise: never scored truncated)."""
    if not facts:
        raise ValueError("no facts to encode (all dropped by the vocabulary filter?)")
    queries, labels = [], []
    for fact in facts:
        label, problem = VocabFilter.token_id(tokenizer, fact.object)
        if problem:
            raise ValueError(f"{fact.source}: object {fact.object!r} is {problem}; filter facts with VocabFilter first")
        queries.append(builder.build(fact.subject))
        labels.append(label)
    length = max(len(query.input_ids) for query in queries)
    pad_id = padding_id(tokenizer)
    input_ids = np.full((len(queries), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(queries), length), dtype=np.int64)
    prompt_index = np.full((len(queries), length), -1, dtype=np.int64)
    for row, query in enumerate(queries):
        size = len(query.input_ids)
        input_ids[row, :size] = query.input_ids
        attention_mask[row, :size] = 1
        prompt_index[row, :size] = query.prompt_index
    return ArrayDataset({"input_ids": input_ids, "attention_mask": attention_mask, "prompt_index": prompt_index,
                         "answer_position": np.array([q.answer_position for q in queries], dtype=np.int64),
                         "labels": np.array(labels, dtype=np.int64)})


def padding_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.unk_token_id


def pad_to_width(dataset: ArrayDataset, width: int, pad_id: int) -> ArrayDataset:
    """`encode_facts`' columns right-padded to `width` positions (padding is masked, or after the answer for
    a causal LM, so no logit changes): splits of one width share one compiled graph."""
    filler = {"input_ids": pad_id, "attention_mask": 0, "prompt_index": -1}
    columns = dict(dataset.columns)
    for name, value in filler.items():
        gap = width - columns[name].shape[1]
        if gap < 0:
            raise ValueError(f"column {name} is {columns[name].shape[1]} wide, more than {width}")
        columns[name] = np.pad(columns[name], ((0, 0), (0, gap)), constant_values=value)
    return ArrayDataset(columns)
