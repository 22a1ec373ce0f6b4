"""Backbones from mindnlp (Hugging Face model code running on MindSpore): loading, checks, freezing."""

import os

from ..backend import torch  # noqa: F401  (mindnlp must be imported before transformers is used)
import transformers

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "deberta", "deberta-v2", "gpt2")


class BackboneLoadError(OSError):
    """A backbone could not be loaded; the message says what to pass instead."""


def check_model_type(model_type: str) -> str:
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"unknown model type {model_type!r}; ms_ptuning supports {', '.join(SUPPORTED_MODEL_TYPES)}")
    return model_type


def build_backbone(config: "transformers.PretrainedConfig"):
    """A randomly initialised backbone from a config (tests, from-scratch training)."""
    check_model_type(config.model_type)
    return transformers.AutoModel.from_config(config, attn_implementation="eager")


def load_backbone(name_or_path: str, **config_overrides):
    """Load pretrained weights from a local directory (config.json + model.safetensors).

    Weights are read from safetensors only; pickled `pytorch_model.bin` files are never unpickled here.
    A hub name is tried only when it is not a local directory, and a failure says to pass a directory.
    """
    local = os.path.isdir(name_or_path)
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path, **config_overrides)
    except (OSError, ValueError) as error:
        raise BackboneLoadError(_not_found_message(name_or_path, local, error)) from None
    check_model_type(config.model_type)
    if local and not any(f.endswith(".safetensors") for f in os.listdir(name_or_path)):
        raise BackboneLoadError(f"{name_or_path} has no *.safetensors weights; ms_ptuning does not unpickle "
                                "pytorch_model.bin. Convert it once with safetensors (see README).")
    try:
        return transformers.AutoModel.from_pretrained(name_or_path, config=config, use_safetensors=True,
                                                      attn_implementation="eager")
    except OSError as error:
        raise BackboneLoadError(_not_found_message(name_or_path, local, error)) from None


def _not_found_message(name_or_path: str, local: bool, error: Exception) -> str:
    if local:
        return f"could not load a model from directory {name_or_path}: {error}"
    return (f"{name_or_path!r} is not a local directory and could not be fetched from the model hub "
            f"(no network?). Download the model elsewhere and pass its local directory (config.json + "
            f"model.safetensors + tokenizer files) instead. Cause: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}")


def freeze(module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad = False
