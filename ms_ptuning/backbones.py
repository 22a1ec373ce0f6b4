"""Backbones from mindnlp (Hugging Face model code running on MindSpore): loading and checks."""

import os
import socket
import warnings
from urllib.parse import urlparse

import transformers

from .safe_loading import WeightsFileError, check_safetensors, pickle_files

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "deberta", "deberta-v2", "gpt2", "llama", "qwen2")
# run.py's dropout flags (BERT's config names, which THUDM's run.py sets) → the config fields of model types
# that name them differently. GPT-2 drops the embeddings and each block's two output projections (BERT's
# hidden dropout) with embd_pdrop and resid_pdrop, the attention probabilities with attn_pdrop; Llama and
# Qwen2 have attention dropout only (hidden_dropout_prob still drops their prefix and classifier input).
DROPOUT_FIELDS = {
    "gpt2": {"hidden_dropout_prob": ("resid_pdrop", "embd_pdrop"), "attention_probs_dropout_prob": ("attn_pdrop",)},
    **{model_type: {"hidden_dropout_prob": (), "attention_probs_dropout_prob": ("attention_dropout",)}
       for model_type in ("llama", "qwen2")},
}


class BackboneLoadError(OSError):
    """A backbone could not be loaded; the message says what to pass instead."""


def is_causal_lm_type(model_type: str) -> bool:
    """Whether `AutoModelForCausalLM` builds a model of this type."""
    return model_type in transformers.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def loads_whole_causal_lm(model_type: str, causal_lm: bool) -> bool:
    """Whether a model of this type loads as its whole `*ForCausalLM` (`hf_backbone.HFCausalLM`, eager): a causal LM
    that ms_ptuning has no backbone of its own for."""
    return causal_lm and model_type not in SUPPORTED_MODEL_TYPES and is_causal_lm_type(model_type)


def check_model_type(model_type: str, causal_lm: bool = False) -> str:
    """`causal_lm`: the model is wanted for a causal LM head, which takes any causal LM mindnlp loads."""
    if model_type not in SUPPORTED_MODEL_TYPES and not loads_whole_causal_lm(model_type, causal_lm):
        others = "any model type transformers' AutoModelForCausalLM builds (mistral, gemma, phi, opt, bloom, " \
                 "gpt_neox, ...)"
        also = f", and as a causal LM {others}" if causal_lm else f"; {others} loads as a causal LM only (chat)"
        raise ValueError(f"unknown model type {model_type!r}; ms_ptuning supports {', '.join(SUPPORTED_MODEL_TYPES)}"
                         f"{also}")
    return model_type


def dropout_fields(model_type: str, flags: dict) -> dict:
    """{config field: value} that the dropout `flags` ({flag: value}) set in a `model_type` config."""
    names = DROPOUT_FIELDS.get(model_type, {})
    return {field: value for flag, value in flags.items() for field in names.get(flag, (flag,))}


def auto_class(model_type: str, causal_lm: bool):
    """The backbone alone (`AutoModel`), or the whole causal LM for a type ms_ptuning has no backbone of."""
    check_model_type(model_type, causal_lm)
    return transformers.AutoModelForCausalLM if loads_whole_causal_lm(model_type, causal_lm) else transformers.AutoModel


def build_backbone(config: "transformers.PretrainedConfig", causal_lm: bool = False):
    """A randomly initialised backbone from a config (tests, from-scratch training)."""
    return auto_class(config.model_type, causal_lm).from_config(config, attn_implementation="eager")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers at all; checked once before any download so an offline user gets
    a clear error at once instead of minutes of retries."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _require_local_or_hub(name_or_path: str) -> None:
    if not os.path.isdir(name_or_path) and not hub_reachable():
        raise BackboneLoadError(_not_found_message(name_or_path, False, ConnectionError("the model hub is unreachable")))


def load_backbone(name_or_path: str, allow_pickle: bool = False, causal_lm: bool = False, dropout: dict | None = None,
                  **config_overrides):
    """Load pretrained weights from a local directory (config.json + model.safetensors), the config's fields
    set from `config_overrides` and `dropout` (run.py's dropout flags, translated by `dropout_fields`).

    `causal_lm`: for a causal LM head; a decoder type ms_ptuning has no backbone of (not gpt2, llama, qwen2)
    then loads as its whole `*ForCausalLM`, output layer included (`hf_backbone.HFCausalLM`).

    Weights are read from safetensors only, each file checked to be complete first. Pickled
    `pytorch_model.bin` files are unpickled only with `allow_pickle=True` (run.py: --allow_pickle), with a
    warning: unpickling runs whatever code the file holds, and mindtorch's `torch.load` ignores
    `weights_only`. A hub name is tried only when it is not a local directory, and a failure says to pass
    a directory.
    """
    _require_local_or_hub(name_or_path)
    local = os.path.isdir(name_or_path)
    try:
        config = transformers.AutoConfig.from_pretrained(name_or_path, **config_overrides)
    except (OSError, ValueError) as error:
        raise BackboneLoadError(_not_found_message(name_or_path, local, error)) from None
    model_class = auto_class(config.model_type, causal_lm)
    for field, value in dropout_fields(config.model_type, dropout or {}).items():
        setattr(config, field, value)
    safetensors = sorted(f for f in os.listdir(name_or_path) if f.endswith(".safetensors")) if local else []
    try:
        for name in safetensors:
            check_safetensors(os.path.join(name_or_path, name))
    except WeightsFileError as error:
        raise BackboneLoadError(f"could not load a model from directory {name_or_path}: {error}") from None
    use_safetensors = True
    if local and not safetensors:
        pickled = pickle_files(name_or_path)
        if not allow_pickle:
            raise BackboneLoadError(
                f"{name_or_path} has no *.safetensors weights{f' (only pickle files {pickled})' if pickled else ''}; "
                "ms_ptuning does not unpickle weights by default because unpickling can run arbitrary code. "
                "Convert them once with safetensors (see README), or pass --allow_pickle (allow_pickle=True) "
                "if you trust the file.")
        warnings.warn(f"unpickling {', '.join(pickled) or 'the weights'} in {name_or_path} (allow_pickle): "
                      "this runs any code the file contains; use it only for files you trust", stacklevel=2)
        use_safetensors = False
    elif not local and allow_pickle:
        use_safetensors = None  # from the hub: safetensors when there are any, else the pickle
    try:
        return model_class.from_pretrained(name_or_path, config=config, use_safetensors=use_safetensors,
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


def input_positions(config) -> int | None:
    """How many token positions the backbone embeds (None: relative positions only, no limit)."""
    if config.model_type == "gpt2":
        return config.n_positions
    if config.model_type in ("llama", "qwen2"):  # rotary: nothing to run out of, trained on max_position_embeddings
        return None
    if config.model_type in ("deberta", "deberta-v2") and not config.position_biased_input:
        return None
    if config.model_type == "roberta":  # positions start after padding_idx
        return config.max_position_embeddings - config.pad_token_id - 1
    return getattr(config, "max_position_embeddings", None)  # None: BLOOM's ALiBi


BYTE_LEVEL_BPE_TYPES = ("roberta", "deberta", "gpt2")


def load_tokenizer(name_or_path: str, pretokenized_words: bool = False):
    """The fast tokenizer of a local model directory (a hub name only when online).

    `pretokenized_words`: inputs come as word lists (NER/SRL); byte-level BPE tokenizers then need
    `add_prefix_space=True`, as the reference sets it, so every word is encoded as if preceded by a space.
    """
    _require_local_or_hub(name_or_path)
    local = os.path.isdir(name_or_path)
    try:
        options = {}
        if pretokenized_words and transformers.AutoConfig.from_pretrained(name_or_path).model_type in BYTE_LEVEL_BPE_TYPES:
            options["add_prefix_space"] = True
        return transformers.AutoTokenizer.from_pretrained(name_or_path, **options)
    except (OSError, ValueError) as error:
        raise BackboneLoadError(_not_found_message(name_or_path, local, error)) from None
