"""Imports each module of ms_ptuning as the first import of a process of its own: the sweep behind
tests/test_imports.py. Run as a script, never inside pytest (whose conftest has loaded mindnlp already):

    python first_imports.py package      # every module outside ms_ptuning/reference
    python first_imports.py reference    # ms_ptuning/reference/**, with any import of mindnlp failing

prints one JSON line per module: {"module", "error" (a traceback or null), "output" (what the import printed)}.

A fresh interpreter per module would cost a full MindSpore start each (~96 × 5 s of CPU). Instead this process
first imports what the import order cannot break (`PRELOADED`), then forks one child per module, and each
child imports exactly that module. On the package's side that is libraries that are neither torch nor
transformers nor import them (a user may well import them first), so everything order-sensitive (mindnlp,
torch, transformers, the package itself) is imported for the first time in the child. On the reference's
side it is real torch and transformers, which that side imports first anyway; there, any import of mindnlp or
of the MindSpore stack fails, and the child checks that torch is still real torch.
"""

import gc
import importlib
import importlib.machinery
import json
import os
import pathlib
import sys
import tempfile
import traceback
from collections import Counter

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ms_ptuning"
PRELOADED = {
    "package": ("numpy", "scipy.sparse", "pandas", "pyarrow", "matplotlib", "sklearn.metrics", "jinja2", "regex",
                "huggingface_hub", "safetensors", "tokenizers", "datasets", "mindspore", "mindspore.dataset"),
    "reference": ("numpy", "torch", "transformers", "transformers.modeling_utils", "transformers.cache_utils"),
}
BLOCKED_IN_REFERENCE = ("mindnlp", "mindtorch", "mindspore")
NOT_PRELOADED = {  # top-level packages the parent process must not have imported
    "package": ("torch", "transformers", "peft", "accelerate", "diffusers", "ms_ptuning") + BLOCKED_IN_REFERENCE[:2],
    "reference": ("ms_ptuning",) + BLOCKED_IN_REFERENCE,
}


# ms_ptuning.TORCH_SIDE (this process may not import the package to read it; test_imports checks they agree)
TORCH_SIDE = ("ms_ptuning.reference", "ms_ptuning.comparison.torch_side")


def module_names(side: str) -> list:
    """The package's modules, read from its files: those the PyTorch process runs (ms_ptuning/reference/**,
    the comparison's torch side) or all the others."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        torch_side = any(name == module or name.startswith(module + ".") for module in TORCH_SIDE)
        if torch_side == (side == "reference"):
            names.append(name)
    return names


class BlockMindnlp:
    """Meta path finder: importing mindnlp (or the MindSpore stack under it) fails, as if not installed."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED_IN_REFERENCE:
            raise ImportError(f"{name} imported in the reference process")
        return None


def count_executions() -> Counter:
    """Counts the module bodies Python runs from source (a module run twice holds two copies of its state)."""
    executions = Counter()
    exec_module = importlib.machinery.SourceFileLoader.exec_module

    def counting(loader, module):
        executions[module.__name__] += 1
        return exec_module(loader, module)

    importlib.machinery.SourceFileLoader.exec_module = counting
    return executions


def problems_after_import(side: str, executions: Counter) -> list:
    torch = sys.modules.get("torch")
    torch_file = getattr(torch, "__file__", "") or ""
    found = [f"{module} executed {count} times" for module, count in executions.items()
             if count > 1 and module.split(".")[0] == "ms_ptuning"]  # transformers runs its __init__ twice itself
    if side == "package" and torch is not None and "mindtorch" not in torch_file:
        found.append(f"real torch imported ({torch_file}) instead of mindnlp's mindtorch")
    if side == "reference" and ("mindtorch" in torch_file or not callable(torch.compiler.disable)):
        found.append(f"torch is not real torch: {torch_file}")
    return found


def import_first(side: str, name: str, output_path: str) -> dict:
    """In the forked child: import `name`, with stdout and stderr going to `output_path`."""
    with open(output_path, "wb") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    executions = count_executions()
    gc.disable()  # the child ends right after the import: collecting garbage would cost ~15% of its time
    try:
        importlib.import_module(name)
        problems = problems_after_import(side, executions)
        error = "\n".join(problems) or None
    except BaseException:  # noqa: B036  (SystemExit from an import is a failure to report too)
        error = traceback.format_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    return {"module": name, "error": error}


def sweep(side: str, jobs: int) -> list:
    if side == "reference":
        sys.meta_path.insert(0, BlockMindnlp())
    for library in PRELOADED[side]:
        importlib.import_module(library)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in NOT_PRELOADED[side])
    assert not loaded, f"the parent process imported modules the children must import first: {loaded[:5]}"
    names, running, results = module_names(side), {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(names + [None] * jobs):
            while running and (name is None or len(running) >= jobs):
                pid, _ = os.waitpid(-1, 0)
                results.append(collect(running.pop(pid), scratch))
            if name is None:
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    result = import_first(side, name, os.path.join(scratch, f"{index}.out"))
                    pathlib.Path(scratch, f"{index}.json").write_text(json.dumps(result))
                finally:
                    os._exit(0)  # no interpreter teardown: the child's work is done
            running[pid] = (index, name)
    return sorted(results, key=lambda result: result["module"])


def collect(child, scratch: str) -> dict:
    index, name = child
    result_file = pathlib.Path(scratch, f"{index}.json")
    result = (json.loads(result_file.read_text()) if result_file.exists()
              else {"module": name, "error": "the child process died without a result"})
    result["output"] = pathlib.Path(scratch, f"{index}.out").read_text(errors="replace")
    return result


if __name__ == "__main__":
    for line in sweep(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1):
        print(json.dumps(line))
