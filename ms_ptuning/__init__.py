"""ms_ptuning: P-tuning v1, P-tuning v2 and fine-tuning on MindSpore + MindNLP.

Import order. mindnlp must be imported before transformers or torch, whose modules it patches (imported
after them it breaks transformers). A user may import any module of the package first (`from
ms_ptuning.models import HEADS`), so the one place every import passes through, this file, makes sure
`ms_ptuning.backend` (mindnlp, then its workarounds) is loaded before the first module that needs it. This
file cannot simply import the backend: the PyTorch reference process imports `ms_ptuning.reference...`,
which runs this file first, and must get real torch. So a meta path finder (`BackendFirst`), which sees the
name of each module before it loads, imports the backend first for every module but the reference's and the
few in `WITHOUT_BACKEND`. The Python API's names (`from ms_ptuning import load_adapter`) are looked up in
`ms_ptuning.api` only when first used (module `__getattr__`, PEP 562).
"""

import importlib
import sys

__version__ = "0.1.0"

API = ("AdapterModel", "build_model", "load_adapter", "load_tokenizer", "print_trainable_parameters", "to_inputs",
       "trainable_parameters")

REFERENCE = __name__ + ".reference"
# The modules a PyTorch process runs (it must get real torch): once one is imported, this process is torch's.
TORCH_SIDE = (REFERENCE, __name__ + ".comparison.torch_side")
BACKEND = __name__ + ".backend"
# Loaded without the backend first (tests/test_imports.py checks that none of them gets real torch):
# - plain Python: `config` (the reference shares it), `cli` (its --help stays instant), `data.packaged` (the
#   shipped files' paths, printed by one-liners in the README);
# - `run` with `distributed` (MindSpore only): msrun's scheduler process runs the same command and turns into
#   the scheduler before mindnlp is paid for; run.py imports the backend itself afterwards;
# - the backend and the modules it imports (`layers`, `device.target`, `device.jit`, `device.cpu_kernels`,
#   `device.kernels`: plain MindSpore), which would otherwise run twice;
# - `comparison` (its __init__ imports nothing), whose `torch_side` runs in the PyTorch process.
WITHOUT_BACKEND = {f"{__name__}.{name}" for name in ("config", "cli", "data", "data.packaged", "run", "distributed",
                                                      "backend", "layers", "device", "device.target", "device.jit",
                                                      "device.cpu_kernels", "device.kernels", "comparison")}


class BackendFirst:
    """Meta path finder that imports the backend before the first module of the package that needs it."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if (name.startswith(__name__ + ".") and BACKEND not in sys.modules and name not in TORCH_SIDE
                and not any(module in sys.modules for module in TORCH_SIDE) and name not in WITHOUT_BACKEND):
            importlib.import_module(BACKEND)
        return None  # the ordinary finders load the module itself


sys.meta_path.insert(0, BackendFirst())


def __getattr__(name: str):
    if name in API:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(API))
