"""THUDM/P-tuning-v2 output directories: the state dict of its model classes (model/sequence_classification.py,
token_classification.py, question_answering.py, multiple_choice.py) and the `config.json` its run.py saves
(the backbone's config with `pre_seq_len`, `prefix_projection`, `prefix_hidden_size` and the class in
`architectures`). Fine-tuning (neither --prefix nor --prompt) runs transformers' own `AutoModelFor*`
classes, whose names and parameters these are too.

Parameter names (THUDM's ↔ ms_ptuning's): the backbone under `bert.` / `roberta.` / `deberta.` ↔
`encoder.backbone.`; `prefix_encoder.embedding.weight` and the projection `prefix_encoder.trans.0.*` /
`trans.2.*` (Linear, Tanh, Linear) ↔ `encoder.prefix_encoder.embedding.weight`, `transform.0.*` /
`transform.1.*`; `classifier.*`, `qa_outputs.*` and DeBERTa's `pooler.dense.*` alike on both sides.

Refused: THUDM's `--prompt` classes (Bert/RobertaPrompt*) pass the embedded input back through the
embedding layer, adding position and token-type embeddings and LayerNorm a second time, where ms_ptuning's
prompt mode adds them once (README: deliberate differences); and heads THUDM/P-tuning-v2 has no class for
(causal LM, pre-training, LAMA).
"""

import json
import os
import shutil

import numpy as np
from safetensors.numpy import save_file

from ..config import PTuningConfig
from .files import ForeignAdapter, base_labels, load_weights_file, read_json

NAME = "thudm"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILE = "pytorch_model.bin"
BACKBONE = "encoder.backbone."
BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
ATTRIBUTES = {"bert": "bert", "roberta": "roberta", "deberta": "deberta", "deberta-v2": "deberta"}
PREFIX_CLASSES = {
    "sequence_classification": {"bert": "BertPrefixForSequenceClassification",
                                "roberta": "RobertaPrefixForSequenceClassification",
                                "deberta": "DebertaPrefixForSequenceClassification"},
    "token_classification": {"bert": "BertPrefixForTokenClassification",
                             "roberta": "RobertaPrefixForTokenClassification",
                             "deberta": "DebertaPrefixForTokenClassification",
                             "deberta-v2": "DebertaV2PrefixForTokenClassification"},
    "question_answering": {"bert": "BertPrefixForQuestionAnswering",
                           "roberta": "RobertaPrefixModelForQuestionAnswering",
                           "deberta": "DebertaPrefixModelForQuestionAnswering"},
    "multiple_choice": {"bert": "BertPrefixForMultipleChoice", "roberta": "RobertaPrefixForMultipleChoice",
                        "deberta": "DebertaPrefixForMultipleChoice"},
}
FINETUNE_CLASSES = {head: {model_type: f"{stem}For{task}" for model_type, stem in
                           (("bert", "Bert"), ("roberta", "Roberta"), ("deberta", "Deberta"),
                            ("deberta-v2", "DebertaV2"))}
                    for head, task in (("sequence_classification", "SequenceClassification"),
                                       ("token_classification", "TokenClassification"),
                                       ("question_answering", "QuestionAnswering"),
                                       ("multiple_choice", "MultipleChoice"))}
PROMPT_CLASSES = {"BertPromptForSequenceClassification", "RobertaPromptForSequenceClassification",
                  "BertPromptForMultipleChoice", "RobertaPromptForMultipleChoice"}
PROMPT_DIFFERENCE = ("THUDM's --prompt models pass the embedded input back through the embedding layer (position "
                     "and token-type embeddings and LayerNorm applied twice); ms_ptuning's prompt mode applies them "
                     "once")
CLASSES = {(head, mode, model_type): name for mode, table in (("prefix", PREFIX_CLASSES), ("finetune", FINETUNE_CLASSES))
           for head, by_type in table.items() for model_type, name in by_type.items()}
ENCODER_NAMES = (("encoder.prefix_encoder.transform.0.", "prefix_encoder.trans.0."),
                 ("encoder.prefix_encoder.transform.1.", "prefix_encoder.trans.2."),
                 ("encoder.prefix_encoder.", "prefix_encoder."))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "spm.model", "added_tokens.json")


def refusal(head: str, mode: str, model_type: str) -> str | None:
    if mode == "prompt":
        return PROMPT_DIFFERENCE
    if (head, mode, model_type) not in CLASSES:
        return f"THUDM/P-tuning-v2 has no {mode} model class for the {head} head on {model_type}"
    return None


def is_thudm_dir(directory: str) -> bool:
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        return False
    architectures = read_json(path).get("architectures") or []
    return bool(set(architectures) & (set(CLASSES.values()) | PROMPT_CLASSES))


def thudm_name(name: str, attribute: str) -> str:
    if name.startswith(BACKBONE):
        return f"{attribute}.{name[len(BACKBONE):]}"
    for ours, theirs in ENCODER_NAMES:
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return name


def our_name(name: str, attribute: str) -> str:
    if name.startswith(f"{attribute}."):
        return BACKBONE + name[len(attribute) + 1:]
    for ours, theirs in ENCODER_NAMES:
        if name.startswith(theirs):
            return ours + name[len(theirs):]
    return name


def write(saved: dict, weights: dict, output: str) -> None:
    """Write THUDM's output layout from an ms_ptuning adapter: `weights` is every weight of the built model
    (numpy, backbone included); the base model's tokenizer files are copied as THUDM's Trainer saves them."""
    config = saved["ptuning_config"]
    head, mode, model_type = saved["head"], config["mode"], saved["backbone_config"]["model_type"]
    reason = refusal(head, mode, model_type)
    if reason:
        raise ValueError(f"cannot export a {head} {mode} adapter on {model_type} to THUDM's layout: {reason}")
    attribute = ATTRIBUTES[model_type]
    state = {thudm_name(name, attribute): np.ascontiguousarray(array) for name, array in weights.items()}
    labels = saved.get("labels") or list(range(config["num_labels"]))
    thudm_config = dict(saved["backbone_config"], architectures=[CLASSES[head, mode, model_type]],
                        num_labels=config["num_labels"], problem_type=config["problem_type"],
                        id2label={str(index): str(label) for index, label in enumerate(labels)},
                        label2id={str(label): index for index, label in enumerate(labels)})
    if head == "question_answering":
        thudm_config.update(num_labels=2, id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    if mode == "prefix":
        thudm_config.update(pre_seq_len=config["pre_seq_len"], prefix_projection=config["prefix_projection"],
                            prefix_hidden_size=config["prefix_hidden_size"],
                            hidden_dropout_prob=config["prefix_dropout"])
    os.makedirs(output, exist_ok=True)
    save_file(state, os.path.join(output, WEIGHTS_FILE), metadata={"format": "pt"})
    with open(os.path.join(output, CONFIG_FILE), "w") as handle:
        json.dump(thudm_config, handle, indent=2)
    base = saved.get("base_model")
    for name in TOKENIZER_FILES:
        if base and os.path.isfile(os.path.join(base, name)):
            shutil.copyfile(os.path.join(base, name), os.path.join(output, name))


def read(directory: str, allow_pickle: bool = False) -> ForeignAdapter:
    """A THUDM output directory as an ms_ptuning adapter holding every weight."""
    path = os.path.join(directory, CONFIG_FILE)
    thudm_config = read_json(path)
    architecture = next(name for name in thudm_config["architectures"] if name in set(CLASSES.values()) | PROMPT_CLASSES)
    if architecture in PROMPT_CLASSES:
        raise ValueError(f"{path}: field 'architectures' is {architecture!r}, which is not imported: {PROMPT_DIFFERENCE}")
    head, mode, model_type = next(key for key, name in CLASSES.items() if name == architecture)
    if thudm_config.get("model_type") != model_type:
        raise ValueError(f"{path}: field 'model_type' is {thudm_config.get('model_type')!r}, but field "
                         f"'architectures' names {architecture}, a {model_type} model")
    arrays, source = load_weights_file(directory, WEIGHTS_FILE, PICKLE_FILE, allow_pickle)
    attribute = ATTRIBUTES[model_type]
    # buffers transformers keeps in some versions' state dicts (THUDM's 4.11: position ids), not weights
    weights = {our_name(name, attribute): array for name, array in arrays.items() if not name.endswith(BUFFERS)}
    labelled = head in ("sequence_classification", "token_classification")
    num_labels = thudm_config.get("num_labels", 2) if labelled else 2
    dropout = thudm_config.get("hidden_dropout_prob", 0.1)
    problem_type = thudm_config.get("problem_type") or ("regression" if num_labels == 1 else
                                                        "single_label_classification")
    prefix = {}
    if mode == "prefix":
        for name in ("pre_seq_len", "prefix_projection", "prefix_hidden_size"):
            if name not in thudm_config:
                raise ValueError(f"{path}: field {name!r} is missing (THUDM's run.py writes it for --prefix)")
        prefix = dict(pre_seq_len=thudm_config["pre_seq_len"], prefix_projection=thudm_config["prefix_projection"],
                      prefix_hidden_size=thudm_config["prefix_hidden_size"])
    ptuning = PTuningConfig(mode=mode, prefix_dropout=dropout, classifier_dropout=dropout, num_labels=num_labels,
                            problem_type=problem_type, **prefix)
    has_tokenizer = any(os.path.isfile(os.path.join(directory, name)) for name in TOKENIZER_FILES)
    config = {"head": head, "ptuning_config": ptuning.to_dict(), "backbone_config": thudm_config,
              "base_model": os.path.abspath(directory) if has_tokenizer else thudm_config.get("_name_or_path"),
              "labels": base_labels(thudm_config, num_labels) if labelled else None,
              "imported_from": {"format": NAME, "directory": os.path.abspath(directory)}}
    return ForeignAdapter(config, weights, source, holds_backbone=True, format=NAME)
