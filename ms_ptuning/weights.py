"""Named weights of a model made of MindSpore Cells around a mindtorch backbone, and safetensors I/O.

A model's weights are its Cells' parameters plus, for every mindnlp model inside it (an `HFBackbone` at
`<path>`), the model's parameters under `<path>.<hf name>`, e.g. `encoder.backbone.embeddings.word_embeddings.weight`. The names equal those of the torch reference, so one
safetensors file loads into either side.
"""

import numpy as np
from mindspore import Tensor, ops
from mindspore.common.dtype import _dtype_to_nptype  # the public dtype_to_nptype is deprecated in 2.7 and logs so

from .hf_backbone import HFBackbone


def named_weights(model) -> dict:
    """name → parameter, Cells' own first, then each backbone's."""
    weights = dict(model.parameters_and_names())
    for path, cell in model.cells_and_names():
        if isinstance(cell, HFBackbone):
            prefix = f"{path}." if path else ""
            weights.update({prefix + name: param for name, param in cell.model.named_parameters()})
    return weights


def trainable_weights(model) -> dict:
    return {name: param for name, param in named_weights(model).items() if param.requires_grad}


def count_parameters(weights: dict) -> int:
    return sum(int(np.prod(param.shape)) for param in weights.values())


def to_numpy(weights: dict) -> dict:
    """Copies: `asnumpy()` of a MindSpore Parameter shares its memory, so an optimizer step (`ops.assign`)
    would silently change a snapshot taken without `.copy()`."""
    return {name: param.asnumpy().copy() for name, param in weights.items()}


def assign_weights(model, arrays: dict, *, strict: bool = True, source: str = "state") -> None:
    """Copy numpy arrays into the model's parameters by name, checking names, shapes and dtypes first,
    so a mismatch changes nothing and names every offending tensor."""
    weights = named_weights(model)
    missing = sorted(set(weights) - set(arrays)) if strict else []
    unexpected = sorted(set(arrays) - set(weights))
    wrong = [f"{name}: {source} has {tuple(arrays[name].shape)} {arrays[name].dtype}, "
             f"model has {tuple(weights[name].shape)} {weights[name].dtype}"
             for name in arrays if name in weights and tuple(arrays[name].shape) != tuple(weights[name].shape)]
    wrong_dtype = [f"{name}: {source} has {arrays[name].dtype}, model has {numpy_dtype(weights[name])}"
                   for name in arrays if name in weights and not lossless_into(arrays[name].dtype, weights[name])]
    if missing or unexpected or wrong or wrong_dtype:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)}: {', '.join(missing[:10])}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:10])}")
        if wrong:
            problems.append("wrong shape: " + "; ".join(wrong[:10]))
        if wrong_dtype:
            problems.append("wrong dtype: " + "; ".join(wrong_dtype[:10]))
        raise ValueError(f"{source} does not match the model: " + " | ".join(problems))
    for name, array in arrays.items():
        param = weights[name]
        ops.assign(param, Tensor(np.ascontiguousarray(array), dtype=param.dtype))


def numpy_dtype(param) -> np.dtype:
    return np.dtype(_dtype_to_nptype(param.dtype))


def lossless_into(dtype, param) -> bool:
    """Whether values of numpy `dtype` fit the parameter's dtype unchanged: the same kind (float, int, bool)
    and no narrowing. float16 → float32 is fine; float32 → float16 or int64 → float32 would alter the
    values or mean the wrong tensor."""
    target = numpy_dtype(param)
    return np.dtype(dtype).kind == target.kind and np.can_cast(dtype, target, casting="safe")

