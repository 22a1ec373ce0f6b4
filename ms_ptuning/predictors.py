"""What a trained model says about new inputs, one class per head: input records → output dicts.

A predictor checks one input record at a time (`example`: a missing column, an empty text or a bad token
list raises TaskDataError naming its place) and predicts a batch of checked examples at once (`predict`).
Inputs are tokenized like training did, padded to the longest in the batch. Outputs are JSON-ready:
- sequence classification: `label` and `probabilities` {label: softmax}; multi-label: `labels` (sigmoid >
  0.5) and `probabilities` {label: sigmoid}; regression: `score`.
- token classification: `tokens` and one `tag` per token (null for tokens past the maximum length).
- question answering: `answer` (text from the context), `score` (start + end logit of the span, SQuAD's
  n-best score), `start` / `end` character offsets; SQuAD v2 adapters answer "" when the null answer wins.
- causal LM: `generated` text after the prompt, encoded as training encoded it: a chat adapter's prompt (and
  history), a summarization adapter's `[CLS] article [SEP]`.
"""

import numpy as np

from .chat.data import ChatExample, ChatFormat, decode_text, end_token_id, pad_token_id, parse_record
from .data.nlpcc2017 import PARAGRAPH_MARKER
from .generation import GenerationConfig, generate
from .inference import EagerForward
from .tasks import get_task
from .tasks.custom import TextClassification, TokenClassification, column_names
from .tasks.encoding import effective_max_length, model_inputs
from .tasks.files import check_texts, field
from .tasks.labels import MULTI, REGRESSION, SINGLE, LabelSet
from .tasks.records import TABLES
from .tasks.squad import best_answer


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class Predictor:
    """`columns`: the input columns read; `formats`: the input file formats accepted; `forward`: how the
    model runs on a batch (ms_ptuning.inference: op by op, or compiled on the graph backend). Causal LM
    generation needs no `forward`: `generation.generate` decodes on a compiled fixed-size cache whenever the
    backbone is the native GPT-2.
    """

    formats = TABLES
    default_columns = ("text",)
    default_max_length = 128  # adapters saved before max_seq_length was recorded

    def __init__(self, model, tokenizer, saved: dict, columns=None, max_length: int = None, forward=None):
        self.model, self.tokenizer, self.saved = model, tokenizer, saved
        self.forward = forward or EagerForward(model)
        self.columns = column_names(columns) or tuple(saved.get("text_column_names") or self.default_columns)
        # a recorded None means training cut only at the model's maximum (NER/SRL, as the reference)
        saved_length = saved.get("max_seq_length", self.default_max_length)
        self.max_length = effective_max_length(tokenizer, max_length or saved_length or tokenizer.model_max_length)

    def example(self, where, record: dict):
        raise TypeError(f"{type(self).__name__} must define example()")

    def predict(self, examples: list) -> list:
        raise TypeError(f"{type(self).__name__} must define predict()")


class SequenceClassificationPredictor(Predictor):
    def __init__(self, model, tokenizer, saved: dict, columns=None, max_length: int = None, forward=None):
        super().__init__(model, tokenizer, saved, columns, max_length, forward)
        config = saved["ptuning_config"]
        labels = () if config["problem_type"] == REGRESSION else saved.get("labels") or range(config["num_labels"])
        self.label_set = LabelSet(config["problem_type"], labels)  # adapters without labels: class ids
        self.task = TextClassification(text_column_names=self.columns, label_set=self.label_set)

    def example(self, where, record):
        return self.task.example(where, record, labelled=False)

    def predict(self, examples):
        second = [example["text_b"] for example in examples] if len(self.columns) == 2 else None
        encoded = self.tokenizer([example["text_a"] for example in examples], second, truncation=True,
                                 max_length=self.max_length, padding="longest")
        logits = self.forward(model_inputs(encoded))  # (B, num_labels)
        return [self.describe(row) for row in logits]

    def describe(self, logits: np.ndarray) -> dict:
        problem_type, labels = self.label_set.problem_type, self.label_set.labels
        if problem_type == REGRESSION:
            return {"score": float(logits[0])}
        if problem_type == MULTI:
            chances = 1.0 / (1.0 + np.exp(-logits))
            return {"labels": [label for label, p in zip(labels, chances) if p > 0.5],
                    "probabilities": {str(label): float(p) for label, p in zip(labels, chances)}}
        chances = softmax(logits)
        return {"label": labels[int(np.argmax(chances))],  # argmax: the first of equal maxima
                "probabilities": {str(label): float(p) for label, p in zip(labels, chances)}}


class TokenClassificationPredictor(Predictor):
    formats = ("jsonl", "json", "conll", "saved")
    default_columns = ("tokens",)

    def __init__(self, model, tokenizer, saved: dict, columns=None, max_length: int = None, forward=None):
        super().__init__(model, tokenizer, saved, columns, max_length, forward)
        self.labels = tuple(saved.get("labels") or range(saved["ptuning_config"]["num_labels"]))
        self.task = TokenClassification(text_column_names=self.columns, label_set=LabelSet(SINGLE, self.labels))

    def example(self, where, record):
        return self.task.example(where, record, labelled=False)["words"]

    def predict(self, examples):
        encoded = self.tokenizer(examples, is_split_into_words=True, truncation=True, max_length=self.max_length,
                                 padding="longest")
        tag_ids = self.forward(model_inputs(encoded)).argmax(axis=-1)  # (B, T or wider)
        outputs = []
        for row, words in enumerate(examples):
            tags = [None] * len(words)
            previous = None
            for position, word in enumerate(encoded.word_ids(row)):
                if word is not None and word != previous:  # a word's first sub-token speaks for it
                    tags[word] = self.labels[int(tag_ids[row, position])]
                previous = word
            outputs.append({"tokens": words, "tags": tags})
        return outputs


class QuestionAnsweringPredictor(Predictor):
    default_columns = ("question", "context")
    default_max_length = 384

    def __init__(self, model, tokenizer, saved: dict, columns=None, max_length: int = None, forward=None):
        super().__init__(model, tokenizer, saved, columns, max_length, forward)
        if len(self.columns) != 2:
            raise ValueError(f"question answering reads two columns (question, context), got {self.columns}")
        self.task = get_task(saved.get("task") or "squad")

    def example(self, where, record):
        question, context = (field(record, name, where, str) for name in self.columns)
        for name in self.columns:
            check_texts(where, record, (name,))
        return {"id": str(where), "question": question, "context": context, "answers": []}

    def predict(self, examples):
        windows = self.task.encode(examples, self.tokenizer, self.max_length)
        inputs = {name: windows.columns[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
        start_logits, end_logits = self.forward(inputs)
        owners, offsets = windows.columns["example_index"], windows.columns["offset_mapping"]
        outputs = []
        for index, example in enumerate(examples):
            rows = np.flatnonzero(owners == index)
            spans = [best_answer(start_logits[w], end_logits[w], offsets[w], self.task.n_best_size,
                                 self.task.max_answer_length) for w in rows]
            spans = [span for span in spans if span is not None]
            score, begin, end = max(spans) if spans else (float("-inf"), 0, 0)
            null_score = min(float(start_logits[w, 0] + end_logits[w, 0]) for w in rows)
            unanswered = self.task.version_2 and null_score - score > self.task.null_score_diff_threshold
            outputs.append({"answer": "" if unanswered else example["context"][begin:end],
                            "score": None if not spans else score, "start": begin, "end": end})
        return outputs


class CausalLMPredictor(Predictor):
    """Prompts encoded as training encoded them (ms_ptuning.chat.data.ChatFormat): a chat adapter's saved
    format, prompt column (and history column); a summarization adapter's `[CLS] article [SEP]`, which is the
    plain format over its WordPiece tokenizer, the article cut to leave room for max_new_tokens."""

    default_columns = ("article",)

    def __init__(self, model, tokenizer, saved: dict, columns=None, max_length: int = None, forward=None,
                 generation: dict = None):
        super().__init__(model, tokenizer, saved, columns, max_length or saved.get("max_length") or 512, forward)
        self.generation = GenerationConfig(**{"eos_token_id": end_token_id(tokenizer),
                                              "pad_token_id": pad_token_id(tokenizer), **(generation or {})})
        self.summarization = "chat_format" not in saved
        if self.summarization:
            if self.max_length - self.generation.max_new_tokens < 3:
                raise ValueError(f"max_new_tokens {self.generation.max_new_tokens} leaves no room for a prompt "
                                 f"within the model's {self.max_length} tokens")
            self.format = ChatFormat(max_source_length=self.max_length - self.generation.max_new_tokens)
        else:  # --max_seq_length, when given, is the prompt tokens kept
            self.format = ChatFormat(**{**saved["chat_format"], **({"max_source_length": max_length} if max_length
                                                                   else {})})
        if len(self.columns) > 2:
            raise ValueError(f"a causal LM reads a prompt column and optionally a history column, got {self.columns}")

    def example(self, where, record):
        if self.summarization:
            text = field(record, self.columns[0], where, str).replace(PARAGRAPH_MARKER, "").strip()
            if not text:
                raise where.error("empty text", field=self.columns[0])
            return ChatExample(where, text, [], None)
        history_column = self.columns[1] if len(self.columns) == 2 else None
        example = parse_record(where, record, self.columns[0], None, history_column)
        if example is None:
            raise where.error("empty text", field=self.columns[0])
        return example

    def predict(self, examples):
        prompts = [self.format.source_ids(self.tokenizer, e.query, e.history) for e in examples]
        return [{"generated": decode_text(self.tokenizer, output)}
                for output in generate(self.model, prompts, self.generation)]


PREDICTORS = {"sequence_classification": SequenceClassificationPredictor,
              "token_classification": TokenClassificationPredictor,
              "question_answering": QuestionAnsweringPredictor, "causal_lm": CausalLMPredictor}
