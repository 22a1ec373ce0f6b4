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
side it is real torch and transformers (with the model code the reference builds on), which that side
imports first anyway; there, any import of mindnlp or
of the MindSpore stack fails, and the child checks that torch is still real torch.

Most modules share a longer prefix. Importing `ms_ptuning.a.b` first runs `ms_ptuning/__init__.py`, then
looks up `ms_ptuning.a` through the meta path, where the package's finder imports the backend (mindnlp, the
bulk of every child's time), and only then runs `ms_ptuning.a`. That prefix is the same for every `a` whose
lookup imports the backend (a probe finds which, by stopping at the backend's lookup), so for those modules
a forked process runs it once, `import ms_ptuning` and that lookup, with its output and module executions
recorded, and forks their children from there: each child is then exactly where a fresh process importing its
module first would be. Likewise under a subpackage whose own lookup imports nothing (`ms_ptuning.data`): its
__init__ runs, then the lookup of its module imports the backend. Every other module (the package itself,
and those whose lookups import nothing) gets a child forked from this process.
"""

import gc
import importlib
import importlib.machinery
import importlib.util
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
    "reference": ("numpy", "torch", "transformers", "transformers.modeling_utils", "transformers.cache_utils",
                  "transformers.generation", "transformers.models.bert.modeling_bert",
                  "transformers.models.roberta.modeling_roberta", "transformers.models.deberta.modeling_deberta"),
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


def import_first(side: str, name: str, executions: Counter) -> dict:
    """In the forked child: import `name`; `executions` counts the module bodies run, this child's and its
    prefix's."""
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


def captured(output_path: str, action) -> str | None:
    """Runs `action()` with stdout and stderr going to `output_path`; the traceback if it raised."""
    saved = os.dup(1), os.dup(2)
    with open(output_path, "wb") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    try:
        action()
        return None
    except BaseException:  # noqa: B036
        return traceback.format_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)


class BackendLookup(Exception):
    pass


class StopAtBackend:
    """Meta path finder (the probe's): a lookup of the backend made while looking up `component` (not the
    backend's own) raises `BackendLookup` before the backend loads."""

    def __init__(self):
        self.component = None

    def find_spec(self, name, path=None, target=None):
        if name == "ms_ptuning.backend" != self.component:
            raise BackendLookup
        return None


def lookups_importing_the_backend(package: str, names: list, scratch: str) -> list:
    """The `package.a` (next level of `names` under `package`) whose lookup, right after `import package`,
    imports the backend; probed in a forked child, which stops each lookup there (nothing is loaded)."""
    depth = package.count(".") + 2
    lookups = sorted({".".join(name.split(".")[:depth]) for name in names if name.startswith(package + ".")})
    found = pathlib.Path(scratch, f"{package}.lookups.json")
    pid = os.fork()
    if pid == 0:
        try:
            importing = []
            with open(os.devnull, "wb") as devnull:
                os.dup2(devnull.fileno(), 1)
                os.dup2(devnull.fileno(), 2)
            importlib.import_module(package)
            probe = StopAtBackend()
            sys.meta_path.insert(0, probe)
            for lookup in lookups:
                probe.component = lookup
                try:
                    importlib.util.find_spec(lookup)
                except BackendLookup:
                    importing.append(lookup)
            found.write_text(json.dumps(importing))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return json.loads(found.read_text()) if found.exists() else []  # no probe result: no sharing


def prefix_groups(names: list, scratch: str) -> list:
    """[(package, the lookups under it that import the backend)]: first the package's top level, then each
    of its subpackages whose own lookup imports nothing (`ms_ptuning.data`: its modules import the backend
    only after its __init__ has run)."""
    top = lookups_importing_the_backend("ms_ptuning", names, scratch)
    packages = sorted({".".join(name.split(".")[:2]) for name in names if name.count(".") >= 2} - set(top))
    groups = [("ms_ptuning", top)] + [(package, lookups_importing_the_backend(package, names, scratch))
                                      for package in packages]
    return [(package, lookups) for package, lookups in groups if lookups]


def run_group(side: str, package: str, lookups: list, names: list, jobs: int, scratch: str,
              executions: Counter) -> list:
    """In a forked process: `import package` and the first of `lookups` (which imports the backend), output
    recorded; then one child per module of `names` from there."""
    results_file = pathlib.Path(scratch, f"{package}.results.json")
    pid = os.fork()
    if pid == 0:
        try:
            prefix_output = os.path.join(scratch, f"{package}.prefix.out")
            error = captured(prefix_output, lambda: (importlib.import_module(package),
                                                     importlib.util.find_spec(lookups[0])))
            prefix = {"output": pathlib.Path(prefix_output).read_text(errors="replace"), "error": error}
            results_file.write_text(json.dumps(fork_children(side, names, jobs, scratch, executions, prefix)))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    if results_file.exists():
        return json.loads(results_file.read_text())
    return [{"module": name, "error": f"the process importing {package} died without results", "output": ""}
            for name in names]


def fork_children(side: str, names: list, jobs: int, scratch: str, executions: Counter, prefix: dict) -> list:
    """One child per module, at most `jobs` at a time, each importing its module from this process's state;
    `prefix`: what this process printed ("output") or raised ("error") on the way to that state."""
    running, results = {}, []
    for name in names + [None] * jobs:
        while running and (name is None or len(running) >= jobs):
            pid, _ = os.waitpid(-1, 0)
            results.append(collect(running.pop(pid), scratch, prefix))
        if name is None:
            continue
        if prefix["error"]:
            results.append({"module": name, "error": prefix["error"], "output": prefix["output"]})
            continue
        pid = os.fork()
        if pid == 0:
            try:
                output = os.path.join(scratch, f"{name}.out")
                with open(output, "wb") as handle:
                    os.dup2(handle.fileno(), 1)
                    os.dup2(handle.fileno(), 2)
                pathlib.Path(scratch, f"{name}.json").write_text(json.dumps(import_first(side, name, executions)))
            finally:
                os._exit(0)  # no interpreter teardown: the child's work is done
        running[pid] = name
    return results


def sweep(side: str, jobs: int) -> list:
    if side == "reference":
        sys.meta_path.insert(0, BlockMindnlp())
    for library in PRELOADED[side]:
        importlib.import_module(library)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in NOT_PRELOADED[side])
    assert not loaded, f"the parent process imported modules the children must import first: {loaded[:5]}"
    executions = count_executions()
    names = module_names(side)
    with tempfile.TemporaryDirectory() as scratch:
        results, claimed = [], set()
        for package, lookups in prefix_groups(names, scratch):
            shared = [name for name in names if name not in claimed
                      and any(name == lookup or name.startswith(lookup + ".") for lookup in lookups)]
            results += run_group(side, package, lookups, shared, jobs, scratch, executions)
            claimed.update(shared)
        results += fork_children(side, [name for name in names if name not in claimed], jobs, scratch, executions,
                                 {"output": "", "error": None})
    return sorted(results, key=lambda result: result["module"])


def collect(name: str, scratch: str, prefix: dict) -> dict:
    result_file = pathlib.Path(scratch, f"{name}.json")
    result = (json.loads(result_file.read_text()) if result_file.exists()
              else {"module": name, "error": "the child process died without a result"})
    result["output"] = prefix["output"] + pathlib.Path(scratch, f"{name}.out").read_text(errors="replace")
    return result


if __name__ == "__main__":
    for line in sweep(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1):
        print(json.dumps(line))
