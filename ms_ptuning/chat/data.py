"""Prompt/response records → token ids for a causal LM, as THUDM's ChatGLM-6B ptuning/main.py builds them.

A record is a JSON object (JSON lines, a JSON array, or any format `tasks.records` reads) with a prompt, a
response and optionally a history: a list of [query, response] pairs from earlier rounds.

The prompt text: with a chat template on the tokenizer, the template over the history as user/assistant
messages and the prompt as the last user message, ending with the template's generation prompt; without
one, ChatGLM's plain format: the prompt alone, or with a history
"[Round 0]\\n问：q0\\n答：r0\\n[Round 1]\\n问：prompt\\n答：".

Source ids: the prompt text tokenized (with the tokenizer's own special tokens when there is no template,
e.g. `[CLS] … [SEP]` for a WordPiece vocabulary or `<s> …` for Llama; a template writes its own), cut to its
first `max_source_length` tokens (ChatGLM keeps the first max_source_length − 1 and adds [gMASK]).
Target ids: the response without special tokens, cut to its first `max_target_length` − 1 tokens, then the
end token (eos, else [SEP]). Training sequence: source + target; labels −100 on the source and the padding,
so the loss is the mean cross-entropy over the target tokens (the end token included).
"""

from dataclasses import asdict, dataclass

from ..data.dataset import ArrayDataset, causal_lm_dataset
from ..data.nlpcc2017 import decode_summary
from ..tasks.base import TaskDataError
from ..tasks.files import field
from ..tasks.records import file_format, iter_records

FORMATS = ("jsonl", "json", "csv", "tsv", "saved")


@dataclass
class ChatFormat:
    """How a record becomes ids; saved with the adapter (`chat_format`) so prediction encodes as training."""

    max_source_length: int = 64
    max_target_length: int = 64
    use_chat_template: bool = False  # the tokenizer's chat template (decided once, when training starts)

    def __post_init__(self):
        if self.max_source_length < 1 or self.max_target_length < 2:
            raise ValueError(f"max_source_length must be >= 1 and max_target_length >= 2 (a token and the end "
                             f"token), got {self.max_source_length} and {self.max_target_length}")

    @classmethod
    def for_tokenizer(cls, tokenizer, max_source_length: int, max_target_length: int) -> "ChatFormat":
        return cls(max_source_length, max_target_length, bool(getattr(tokenizer, "chat_template", None)))

    def to_dict(self) -> dict:
        return asdict(self)

    def prompt_text(self, tokenizer, query: str, history=()) -> str:
        if self.use_chat_template:
            messages = []
            for old_query, response in history:
                messages += [{"role": "user", "content": old_query}, {"role": "assistant", "content": response}]
            messages.append({"role": "user", "content": query})
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if not history:
            return query
        rounds = [f"[Round {i}]\n问：{old_query}\n答：{response}\n" for i, (old_query, response) in enumerate(history)]
        return "".join(rounds) + f"[Round {len(history)}]\n问：{query}\n答："

    def source_ids(self, tokenizer, query: str, history=()) -> list:
        text = self.prompt_text(tokenizer, query, history)
        if self.use_chat_template:
            return tokenizer(text, add_special_tokens=False)["input_ids"][:self.max_source_length]
        return tokenizer(text, truncation=True, max_length=self.max_source_length)["input_ids"]

    def target_ids(self, tokenizer, response: str) -> list:
        ids = tokenizer(response, add_special_tokens=False)["input_ids"][:self.max_target_length - 1]
        return ids + [end_token_id(tokenizer)]


def end_token_id(tokenizer) -> int:
    """What ends a response: eos, or [SEP] for a WordPiece vocabulary (which has no eos)."""
    token_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if token_id is None:
        raise ValueError("the tokenizer has neither an eos nor a [SEP] token to end a response with")
    return token_id


def pad_token_id(tokenizer) -> int:
    """Padding id (masked out, never learned): the pad token, else the end token (Llama has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_token_id(tokenizer)


def decode_text(tokenizer, ids) -> str:
    """Generated ids → text without special tokens; WordPiece pieces joined without the spaces BERT's decode
    puts between Chinese characters (they would change jieba's words and BLEU's characters)."""
    if "[CLS]" in tokenizer.all_special_tokens:
        return decode_summary(tokenizer, ids)
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


@dataclass
class ChatExample:
    where: object  # tasks.files.Where: the file and line (or row) of the record
    query: str
    history: list
    response: str | None


def parse_record(where, record, prompt_column: str, response_column: str | None, history_column: str | None):
    """A ChatExample, or None for an empty prompt or response (ChatGLM's main.py skips those); a missing
    column, a non-string text or a malformed history raises TaskDataError naming the place."""
    if isinstance(record, TaskDataError):
        raise record
    query = field(record, prompt_column, where, str)
    response = field(record, response_column, where, str) if response_column else None
    history = []
    if history_column and record.get(history_column) is not None:
        turns = field(record, history_column, where, list)
        for index, turn in enumerate(turns):
            if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise where.error(f"item {index} is not a [query, response] pair of strings: {turn!r}",
                                  field=history_column)
            history.append(list(turn))
    if not query or (response_column and not response):
        return None
    return ChatExample(where, query, history, response)


def read_examples(path: str, prompt_column: str, response_column: str, history_column: str = None,
                  max_samples: int = None) -> tuple[list, int]:
    """(examples in file order, number of records skipped for an empty prompt or response)."""
    examples, skipped = [], 0
    for where, record in iter_records(path, file_format(path, FORMATS), (prompt_column, response_column)):
        if max_samples is not None and len(examples) >= max_samples:
            break
        example = parse_record(where, record, prompt_column, response_column, history_column)
        if example is None:
            skipped += 1
        else:
            examples.append(example)
    if not examples:
        raise TaskDataError(f"{path}: no record with a non-empty {prompt_column!r} and {response_column!r}")
    return examples, skipped


def chat_dataset(examples: list, tokenizer, chat_format: ChatFormat) -> ArrayDataset:
    sequences = []
    for example in examples:
        source = chat_format.source_ids(tokenizer, example.query, example.history)
        sequences.append((source + chat_format.target_ids(tokenizer, example.response), len(source)))
    return causal_lm_dataset(sequences, pad_token_id(tokenizer))
