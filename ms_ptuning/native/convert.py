"""From a loaded mindnlp model (what `ms_ptuning.backbones.load_backbone` returns) to its native Cell.

The weights move: each tensor is copied into the native parameter of the same name and then released from
the mindnlp model, so at no point do two copies of the backbone exist and afterwards only the native Cell
holds it. The mindnlp model is left without parameters and must not be used again.
"""

from .bert import NativeBert, NativeRoberta
from .functional import ACTIVATIONS
from .gpt2 import NativeGPT2
from .llama import LLAMA_MODEL_TYPES, NativeLlama, check_llama_config

NATIVE_MODEL_TYPES = {"bert": NativeBert, "roberta": NativeRoberta, "gpt2": NativeGPT2, "llama": NativeLlama,
                      "qwen2": NativeLlama}


def check_native_config(config) -> None:
    """Refuse, naming the field, any setting the native Cells do not implement."""
    model_type = getattr(config, "model_type", None)
    if model_type not in NATIVE_MODEL_TYPES:
        raise ValueError(f"no native backbone for model type {model_type!r}; native backbones exist for "
                         f"{', '.join(NATIVE_MODEL_TYPES)} (other models run on the eager mindnlp backend)")
    if model_type in LLAMA_MODEL_TYPES:
        unsupported = check_llama_config(config)
        if unsupported:
            raise ValueError(f"the native {model_type} backbone does not support: {'; '.join(unsupported)}")
        return
    activation = config.activation_function if model_type == "gpt2" else config.hidden_act
    unsupported = []
    if activation not in ACTIVATIONS:
        unsupported.append(f"activation {activation!r} (native: {', '.join(ACTIVATIONS)})")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        unsupported.append(f"position_embedding_type {config.position_embedding_type!r} (native: 'absolute')")
    if getattr(config, "is_decoder", False) and model_type != "gpt2":
        unsupported.append("is_decoder=True (native BERT/RoBERTa are encoders)")
    if getattr(config, "add_cross_attention", False):
        unsupported.append("add_cross_attention=True")
    if unsupported:
        raise ValueError(f"the native {model_type} backbone does not support: {'; '.join(unsupported)}")


def build_native(config, add_pooling_layer: bool = True):
    """An empty native backbone for `config` (parameters uninitialised until weights are moved in)."""
    check_native_config(config)
    if config.model_type == "gpt2" or config.model_type in LLAMA_MODEL_TYPES:
        return NATIVE_MODEL_TYPES[config.model_type](config)
    return NATIVE_MODEL_TYPES[config.model_type](config, add_pooling_layer)


def _release(module, dotted_name: str) -> None:
    """Drop one parameter from a mindtorch module tree, so its memory is freed."""
    path, _, leaf = dotted_name.rpartition(".")
    owner = module.get_submodule(path) if path else module
    delattr(owner, leaf)


def _mismatches(sources: dict, targets: dict, model_type: str) -> list:
    """What keeps the mindnlp model's parameters from mapping one-to-one, by name and shape, onto the native Cell's."""
    problems = []
    if set(sources) - set(targets):
        problems.append(f"only in the mindnlp model: {sorted(set(sources) - set(targets))}")
    if set(targets) - set(sources):
        problems.append(f"only in the native {model_type}: {sorted(set(targets) - set(sources))}")
    return problems + [f"{name}: mindnlp {tuple(sources[name].shape)}, native {tuple(targets[name].shape)}"
                       for name in sorted(set(sources) & set(targets))
                       if tuple(sources[name].shape) != tuple(targets[name].shape)]


def to_native(model):
    """The native Cell for a loaded mindnlp BertModel / RobertaModel / GPT2Model / LlamaModel / Qwen2Model,
    holding its weights.

    Names, shapes and the set of parameters must match exactly (a model with a pruned head or an extra
    module is refused, naming the tensors); `requires_grad` carries over."""
    config = model.config
    native = build_native(config, add_pooling_layer=getattr(model, "pooler", None) is not None)
    targets = dict(native.parameters_and_names())
    problems = _mismatches(dict(model.named_parameters()), targets, config.model_type)
    if problems:
        raise ValueError(f"cannot convert this {config.model_type} model to its native Cell: {'; '.join(problems)}")
    for name, target in targets.items():
        source = model.get_parameter(name)
        target.set_data(source)  # takes over the tensor's storage: no copy
        target.requires_grad = source.requires_grad
        _release(model, name)
    return native
