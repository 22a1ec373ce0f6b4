"""ms_ptuning: P-tuning v1, P-tuning v2 and fine-tuning on MindSpore + MindNLP.

This file imports nothing heavy on purpose: `ms_ptuning.reference` runs the PyTorch reference in a
process that must never import mindnlp (which replaces `torch` with mindtorch). The Python API
(`from ms_ptuning import load_adapter`, see ms_ptuning/api.py) needs mindnlp, so its names are looked up
in `ms_ptuning.api` only when first used (module `__getattr__`, PEP 562), never at `import ms_ptuning`.
"""

import importlib

__version__ = "0.1.0"

API = ("AdapterModel", "build_model", "load_adapter", "load_tokenizer", "print_trainable_parameters", "to_inputs",
       "trainable_parameters")


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(API))
