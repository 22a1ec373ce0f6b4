"""Hugging Face peft (0.17) adapter directories: prefix tuning (PREFIX_TUNING) and prompt tuning
(PROMPT_TUNING, P_TUNING) over `AutoModelForSequenceClassification` / `...TokenClassification` /
`...QuestionAnswering` / `...CausalLM`.

What peft saves: `prompt_embeddings`, the prompt/prefix encoder's OUTPUT for positions 0…P-1 ((P, 2·L·H) for
prefix tuning, (P, H) for prompts; its MLP/LSTM is dropped), and the task head it trains (`modules_to_save`)
as `base_model.<module>.<weight>`. Export therefore writes ms_ptuning's encoder output (folded) as a
PREFIX_TUNING adapter without projection or a PROMPT_TUNING adapter, which peft loads for inference and for
further training (is_trainable=True) alike and which computes the same function; import gives a bare table.

Where peft's model computes another function than ms_ptuning's, the pair is refused (`refusal`):
- prompt tuning for sequence classification: peft's base model pools its first position, the first
  virtual token; ms_ptuning's prompt mode (THUDM's `--prompt`) re-applies the pooler to the first real token.
- multiple choice: peft has no multiple-choice task type (a PeftModel without one runs no prompts).
- DeBERTa prefix tuning: transformers' DeBERTa takes no past_key_values, which peft's prefix tuning needs.
- RoBERTa prefix sequence classification: RobertaForSequenceClassification takes no past_key_values, so
  peft calls its backbone and hands the backbone's second output to the classification head; RoBERTa's
  there has no pooler, so that output is the key/value cache and the forward fails (transformers 4.56).
  (Were it the first token's state, RobertaClassificationHead's dense → tanh → out_proj would equal
  ms_ptuning's pooler → classifier in eval.)
- finetune adapters: every backbone weight trains; peft's prompt-learning adapters hold a frozen base.
peft's prefix tuning applies no dropout to the prefix, so an import sets `prefix_dropout` 0.
"""

import json
import os

import numpy as np
from safetensors.numpy import save_file

from ..config import PTuningConfig
from .files import ForeignAdapter, backbone_sizes, base_labels, load_weights_file, read_json

NAME = "peft"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
TABLE = "prompt_embeddings"
TASK_TYPES = {"sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS",
              "question_answering": "QUESTION_ANS", "causal_lm": "CAUSAL_LM"}
HEADS = {task_type: head for head, task_type in TASK_TYPES.items()}
MODULES_TO_SAVE = {"sequence_classification": ["classifier", "score"],
                   "token_classification": ["classifier", "score"], "question_answering": ["qa_outputs"],
                   "causal_lm": None}  # what peft's PeftModelFor<task> puts there
MODES = {"PREFIX_TUNING": "prefix", "PROMPT_TUNING": "prompt", "P_TUNING": "prompt"}
TABLES = {"prefix": "encoder.prefix_encoder.embedding.weight", "prompt": "encoder.prompt_encoder.embedding.weight"}


def refusal(head: str, mode: str, model_type: str) -> str | None:
    """Why peft's model for this head × mode × backbone computes another function than ms_ptuning's, or None."""
    if mode == "finetune":
        return ("a finetune adapter trains every backbone weight; peft's prompt-learning adapters hold a frozen "
                "base model (save the whole model with transformers instead)")
    if head == "multiple_choice":
        return "peft has no multiple-choice task type: a PeftModel without one runs the base model without prompts"
    if head not in TASK_TYPES:
        return f"peft has no task type for the {head} head"
    if mode == "prompt" and head == "sequence_classification":
        return ("peft's prompt tuning classifies what the base model pools from its first position, the first "
                "virtual token; ms_ptuning's prompt mode (THUDM's --prompt) re-applies the pooler to the first "
                "real token")
    if mode == "prefix" and head == "sequence_classification" and model_type == "roberta":
        return ("peft's prefix tuning runs RobertaForSequenceClassification's backbone itself and hands its second "
                "output, which for RoBERTa (no pooler there) is the key/value cache, to the classification head: the "
                "forward fails in peft 0.17 with transformers 4.56")
    if mode == "prefix" and model_type in ("deberta", "deberta-v2"):
        return "transformers' DeBERTa takes no past_key_values, which peft's prefix tuning needs"
    return None


HEAD_PREFIX = "base_model."  # peft saves a module_to_save's weights under the base model's name for them


def write(saved: dict, weights: dict, table: np.ndarray, output: str) -> None:
    """Write a peft adapter directory from an ms_ptuning adapter: `saved` its config, `weights` every weight
    of the built model (numpy), `table` its folded encoder output."""
    config = saved["ptuning_config"]
    head, mode, model_type = saved["head"], config["mode"], saved["backbone_config"]["model_type"]
    reason = refusal(head, mode, model_type)
    if reason:
        raise ValueError(f"cannot export a {head} {mode} adapter on {model_type} to peft: {reason}")
    hidden, layers, heads = backbone_sizes(saved["backbone_config"])
    peft_config = {"auto_mapping": None, "base_model_name_or_path": saved.get("base_model") or "",
                   "inference_mode": True, "modules_to_save": MODULES_TO_SAVE[head], "num_attention_heads": heads,
                   "num_layers": layers, "num_transformer_submodules": 1,
                   "num_virtual_tokens": config["pre_seq_len"], "revision": None, "task_type": TASK_TYPES[head],
                   "token_dim": hidden}
    if mode == "prefix":
        peft_config.update(peft_type="PREFIX_TUNING", encoder_hidden_size=hidden, prefix_projection=False)
    else:
        peft_config.update(peft_type="PROMPT_TUNING", prompt_tuning_init="RANDOM", prompt_tuning_init_text=None,
                           tokenizer_kwargs=None, tokenizer_name_or_path=None)
    tensors = {TABLE: table}
    tensors.update({HEAD_PREFIX + name: array for name, array in weights.items() if not name.startswith("encoder.")})
    os.makedirs(output, exist_ok=True)
    save_file({name: np.ascontiguousarray(array, dtype=np.float32) for name, array in tensors.items()},
              os.path.join(output, WEIGHTS_FILE))
    with open(os.path.join(output, CONFIG_FILE), "w") as handle:
        json.dump(peft_config, handle, indent=2)


class PeftConfigFile:
    """A peft `adapter_config.json`; `field(name)` raises an error naming the file when the field is missing."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, CONFIG_FILE)
        self.values = read_json(self.path)

    def field(self, name: str):
        if name not in self.values:
            raise ValueError(f"{self.path}: field {name!r} is missing")
        return self.values[name]

    def head_and_mode(self) -> tuple:
        peft_type, task_type = self.field("peft_type"), self.field("task_type")
        if peft_type not in MODES:
            raise ValueError(f"{self.path}: field 'peft_type' is {peft_type!r}; ms_ptuning imports {', '.join(MODES)}")
        if task_type not in HEADS:
            raise ValueError(f"{self.path}: field 'task_type' is {task_type!r}; ms_ptuning imports {', '.join(HEADS)}")
        if self.values.get("num_transformer_submodules", 1) != 1:
            raise ValueError(f"{self.path}: field 'num_transformer_submodules' is "
                             f"{self.values['num_transformer_submodules']}; ms_ptuning's backbones are encoder-only "
                             "or decoder-only (1)")
        return HEADS[task_type], MODES[peft_type]

    def base_config(self, base: str | None) -> tuple:
        """(the base model directory, its config.json as a dict), checked against the adapter's sizes."""
        base = base or self.field("base_model_name_or_path")
        if not base:
            raise ValueError(f"{self.path}: field 'base_model_name_or_path' is empty; pass the base model "
                             "(--model_name_or_path)")
        base_config_path = os.path.join(base, "config.json")
        if not os.path.isfile(base_config_path):
            raise FileNotFoundError(f"{self.path}: base model {base} is not a local model directory (no config.json); "
                                    "pass the base model (--model_name_or_path)")
        backbone_config = read_json(base_config_path)
        for name, value in zip(("token_dim", "num_layers", "num_attention_heads"), backbone_sizes(backbone_config)):
            if self.field(name) != value:
                raise ValueError(f"{self.path}: field {name!r} is {self.field(name)}, but the base model {base} has "
                                 f"{value} ({base_config_path}); pass the model the adapter was trained on "
                                 "(--model_name_or_path)")
        return os.path.abspath(base), backbone_config


def read_weights(directory: str, file: PeftConfigFile, mode: str, allow_pickle: bool) -> tuple:
    """(ms_ptuning name → array, the weights file): the table checked against the config, the head's weights."""
    arrays, source = load_weights_file(directory, WEIGHTS_FILE, PICKLE_FILE, allow_pickle)
    hidden, layers = file.field("token_dim"), file.field("num_layers")
    table_shape = (file.field("num_virtual_tokens"), 2 * layers * hidden if mode == "prefix" else hidden)
    if TABLE not in arrays:
        raise ValueError(f"{source}: no {TABLE!r} tensor")
    if tuple(arrays[TABLE].shape) != table_shape:
        raise ValueError(f"{source}: {TABLE!r} has shape {tuple(arrays[TABLE].shape)}, but {file.path} "
                         f"(num_virtual_tokens, num_layers, token_dim) makes it {table_shape}")
    weights = {TABLES[mode]: arrays.pop(TABLE)}
    outside = sorted(name for name in arrays if not name.startswith(HEAD_PREFIX))
    if outside:
        raise ValueError(f"{source}: tensors {outside[:10]} are neither {TABLE!r} nor a module_to_save's")
    weights.update({name[len(HEAD_PREFIX):]: array for name, array in arrays.items()})
    return weights, source


def read(directory: str, base: str = None, allow_pickle: bool = False) -> ForeignAdapter:
    """A peft adapter directory as an ms_ptuning adapter over `base` (default: its base_model_name_or_path)."""
    file = PeftConfigFile(directory)
    head, mode = file.head_and_mode()
    base_model, backbone_config = file.base_config(base)
    model_type = backbone_config.get("model_type")
    reason = refusal(head, mode, model_type)
    if reason:
        raise ValueError(f"{file.path}: a {file.field('peft_type')} {file.field('task_type')} adapter on {model_type} "
                         f"is not imported: {reason}")
    weights, source = read_weights(directory, file, mode, allow_pickle)
    classifier = weights.get("classifier.weight")
    num_labels = classifier.shape[0] if classifier is not None else 2
    problem_type = backbone_config.get("problem_type") or ("regression" if num_labels == 1 else
                                                           "single_label_classification")
    ptuning = PTuningConfig(mode=mode, pre_seq_len=file.field("num_virtual_tokens"), prefix_dropout=0.0,
                            classifier_dropout=backbone_config.get("hidden_dropout_prob", 0.1),
                            num_labels=num_labels, problem_type=problem_type)
    config = {"head": head, "ptuning_config": ptuning.to_dict(), "backbone_config": backbone_config,
              "base_model": base_model, "labels": base_labels(backbone_config, num_labels),
              "imported_from": {"format": NAME, "directory": os.path.abspath(directory)}}
    if head == "causal_lm":
        config["tokenizer"] = base_model
    return ForeignAdapter(config, weights, source, holds_backbone=False, format=NAME)
