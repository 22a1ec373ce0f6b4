"""The Python API: load a trained adapter and predict, or build a prompt/prefix model for your own loop.

    from ms_ptuning import load_adapter
    model = load_adapter("outputs/reviews/adapter")
    model.predict(["a gripping, funny film", "two hours I will not get back"])
    # → [{"label": "pos", "probabilities": {"neg": 0.08, "pos": 0.92}}, ...]

    from ms_ptuning import build_model, print_trainable_parameters
    model = build_model("/models/bert", head="sequence_classification", mode="prefix", pre_seq_len=16)
    print_trainable_parameters(model)  # trainable params: ... || all params: ... || trainable%: ...

`ms_ptuning/__init__.py` exposes these names without importing this module (which loads mindnlp) until
one of them is used.
"""

import numpy as np
import transformers

from .adapters import load_weights
from .backbones import build_backbone, input_positions, load_backbone, load_tokenizer
from .backend import set_device_target, torch
from .config import PTuningConfig
from .data import nlpcc2017
from .deberta_prefix import DEBERTA_MODEL_TYPES
from .device.jit import set_jit_level
from .encoders.folding import fold_encoders
from .execution import choose_backend
from .inference import EagerForward, GraphForward
from .interop import read_adapter
from .models import HEADS
from .models.causal_lm import load_lm_head
from .predictors import PREDICTORS
from .tasks.files import Where
from .weights import count_parameters, named_weights, trainable_weights

# backbone config fields an adapter's weights depend on: a base model that differs in them cannot carry it
SHAPING_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "n_embd", "n_layer",
                  "n_head", "vocab_size")


class AdapterModel:
    """A trained head on its backbone, in eval mode with its prompt/prefix encoders folded; `backend` (an
    `execution.Backend`) says whether it runs compiled (graph) or op by op (eager)."""

    def __init__(self, model, tokenizer, saved: dict, predictor, backend):
        self.model, self.tokenizer, self.saved, self.predictor = model, tokenizer, saved, predictor
        self.backend = backend

    @property
    def head(self) -> str:
        return self.saved["head"]

    @property
    def labels(self) -> tuple:
        return tuple(self.saved.get("labels") or ())

    @property
    def columns(self) -> tuple:
        """The input columns `predict` reads from dicts (strings and tuples fill them in this order)."""
        return self.predictor.columns

    def record(self, value) -> dict:
        """One input as a record: a dict of columns, a string (first column), a tuple of strings (the
        columns in order: text pairs, question + context) or a list of tokens (token classification)."""
        if isinstance(value, dict):
            return value
        if isinstance(value, str) or (isinstance(value, list) and self.head == "token_classification"):
            return {self.columns[0]: value}
        if isinstance(value, tuple):
            return dict(zip(self.columns, value))
        raise TypeError(f"an input is a dict of columns {self.columns}, a string or a tuple of strings; got "
                        f"{type(value).__name__}")

    def predict(self, inputs, batch_size: int = 32) -> list:
        """One output dict per input (see ms_ptuning.predictors); a bad input raises TaskDataError naming it."""
        if isinstance(inputs, (str, dict)):
            raise TypeError("predict takes a list of inputs; wrap a single one in a list")
        examples = [self.predictor.example(Where(f"inputs[{index}]"), self.record(value))
                    for index, value in enumerate(inputs)]
        outputs = []
        for start in range(0, len(examples), batch_size):
            outputs.extend(self.predictor.predict(examples[start:start + batch_size]))
        return outputs

    def print_trainable_parameters(self) -> None:
        print_trainable_parameters(self.model)


def load_adapter(directory: str, model_name_or_path: str = None, text_column_names=None, max_length: int = None,
                 generation=None, device_target: str = None, backend: str = "auto",
                 batch_size: int = 32, allow_pickle: bool = False, jit_level: str = None) -> AdapterModel:
    """The adapter in `directory` on its base model: an output_dir's `adapter/` or `best_model/`, a Hugging
    Face peft adapter directory or a THUDM/P-tuning-v2 output directory (ms_ptuning.interop; recognised by
    their files). The base model is the directory recorded at training time (peft's
    base_model_name_or_path), or `model_name_or_path`; finetune adapters and THUDM's directories hold every
    weight and need none. `text_column_names` ("a,b" or a sequence) and `max_length` override what the adapter
    saved; `generation`: GenerationConfig fields for causal LMs (max_new_tokens, num_beams, ...).
    `backend` auto|graph|eager (`execution.choose_backend`): on graph (BERT/RoBERTa/GPT-2 by default)
    batches run through compiled eval graphs of `batch_size` rows (ms_ptuning.inference) and GPT-2 generates
    on a compiled fixed-size cache (ms_ptuning.static_decoding). `allow_pickle`: read THUDM's
    pytorch_model.bin / peft's adapter_model.bin when there are no safetensors (unpickling can run code).
    `device_target` CPU|GPU|Ascend and `jit_level` O0|O1|O2 (device/jit.py) set the process's device and
    compilation level when given."""
    if device_target:
        set_device_target(device_target)
    if jit_level:
        set_jit_level(jit_level)
    model, saved, chosen = build_adapter_model(directory, model_name_or_path, backend, allow_pickle)
    head = saved["head"]
    if head not in PREDICTORS:
        raise ValueError(f"{directory}: a {head!r} adapter; prediction covers {', '.join(PREDICTORS)}")
    fold_encoders(model)  # before any graph compiles: a compiled graph keeps what it saw
    model.set_train(False)
    check_max_length(model, max_length)
    base = model_name_or_path or saved.get("base_model")
    tokenizer = adapter_tokenizer(directory, saved, base)
    options = {"generation": generation} if head == "causal_lm" and generation is not None else {}
    forward = GraphForward(model, batch_size) if chosen.is_graph else EagerForward(model)
    predictor = PREDICTORS[head](model, tokenizer, saved, text_column_names, max_length, forward=forward, **options)
    return AdapterModel(model, tokenizer, saved, predictor, chosen)


def build_adapter_model(directory: str, model_name_or_path: str = None, backend: str = "auto",
                        allow_pickle: bool = False) -> tuple:
    """(the adapter's head over its backbone with the adapter's weights loaded, its config as
    `adapter_config.json` holds it, the chosen `execution.Backend`)."""
    adapter = read_adapter(directory, model_name_or_path, allow_pickle)
    saved = adapter.config
    head = saved.get("head")
    if head not in HEADS:
        raise ValueError(f"{directory}: unknown head {head!r}; heads: {', '.join(HEADS)}")
    chosen = choose_backend(backend, saved["backbone_config"]["model_type"])
    base = model_name_or_path or saved.get("base_model")
    model = HEADS[head](chosen.backbone(adapter_backbone(directory, saved, base, adapter.holds_backbone)),
                        PTuningConfig.from_dict(saved["ptuning_config"]))
    if head == "causal_lm" and saved["ptuning_config"]["mode"] != "finetune":  # a finetune adapter holds it
        load_lm_head(model, base)
    load_weights(model, adapter.weights, adapter.source)
    return model, saved, chosen


def adapter_backbone(directory: str, saved: dict, base: str, holds_backbone: bool = False):
    """The backbone the adapter was trained on: rebuilt from its saved config when the adapter holds every
    weight (finetune, THUDM's state dicts), else loaded from `base` after checking it has the shapes the
    adapter was made for."""
    config = dict(saved["backbone_config"])
    config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    causal_lm = saved["head"] == "causal_lm"
    if holds_backbone:
        return build_backbone(config, causal_lm)
    if not base:
        raise ValueError(f"{directory}: a {saved['ptuning_config']['mode']} adapter keeps only its own weights, and "
                         "no base model is recorded; pass the model it was trained on (--model_name_or_path)")
    backbone = load_backbone(base, causal_lm=causal_lm)
    differences = [f"{name} {getattr(config, name, None)} → {getattr(backbone.config, name, None)}"
                   for name in SHAPING_FIELDS if getattr(config, name, None) != getattr(backbone.config, name, None)]
    if differences:
        raise ValueError(f"{directory} was trained on another model than {base} ({'; '.join(differences)}); pass "
                         "the model it was trained on (--model_name_or_path)")
    return backbone


def check_max_length(model, max_length: int | None) -> None:
    """Refuse a `max_length` the backbone cannot embed with the virtual tokens in front (DeBERTa's prefixes
    take no positions), as ms_ptuning.run checks --max_seq_length before training."""
    limit = input_positions(model.backbone.config)
    virtual = model.config.num_virtual_tokens
    if model.config.mode == "prefix" and model.backbone.config.model_type in DEBERTA_MODEL_TYPES:
        virtual = 0
    if max_length and limit is not None and max_length + virtual > limit:
        raise ValueError(f"max_length {max_length} + {virtual} virtual tokens exceed the {limit} positions the "
                         f"model embeds; pass {limit - virtual} or less")


def adapter_tokenizer(directory: str, saved: dict, base: str):
    if saved["head"] == "causal_lm":  # the summarization model's tokenizer (bert-base-chinese's by default)
        return nlpcc2017.load_tokenizer(saved.get("tokenizer"))
    if not base:
        raise ValueError(f"{directory}: no base model is recorded to load the tokenizer from; pass "
                         "--model_name_or_path")
    return load_tokenizer(base, pretokenized_words=saved["head"] == "token_classification")


def build_model(model_name_or_path: str, head: str = "sequence_classification", mode: str = "prefix",
                **ptuning):
    """A head (`HEADS`: sequence_classification, token_classification, question_answering, multiple_choice,
    causal_lm, ...) over the pretrained backbone in a local directory, in `mode` prefix (P-tuning v2),
    prompt (P-tuning) or finetune, with the PTuningConfig fields in `ptuning` (pre_seq_len, num_labels,
    problem_type, prefix_projection, ...). The backbone is frozen in prefix/prompt mode. Call it as
    `loss, outputs = model(**to_inputs(...))`; train `trainable_parameters(model)`."""
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; heads: {', '.join(HEADS)}")
    model = HEADS[head](load_backbone(model_name_or_path, causal_lm=head == "causal_lm"),
                        PTuningConfig(mode=mode, **ptuning))
    if head == "causal_lm":
        load_lm_head(model, model_name_or_path)
    return model


def to_inputs(encoded, **columns) -> dict:
    """Tokenizer output (numpy or lists) plus extra columns (e.g. labels) → the tensors a head takes."""
    arrays = {name: np.asarray(encoded[name]) for name in ("input_ids", "attention_mask", "token_type_ids")
              if name in encoded}
    arrays.update({name: np.asarray(values) for name, values in columns.items()})
    return {name: torch.tensor(values) for name, values in arrays.items()}


def trainable_parameters(model) -> dict:
    """name → Parameter of what trains (the prompt/prefix encoder and the head; everything in finetune mode)."""
    return trainable_weights(model)


def print_trainable_parameters(model) -> None:
    """`trainable params: N || all params: M || trainable%: P`, as peft prints it."""
    trainable, total = count_parameters(trainable_weights(model)), count_parameters(named_weights(model))
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")


__all__ = ["AdapterModel", "build_model", "load_adapter", "load_tokenizer", "print_trainable_parameters",
           "to_inputs", "trainable_parameters"]
