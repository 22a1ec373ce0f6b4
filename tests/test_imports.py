"""Whichever module of the package a user imports first, it imports (mindnlp before transformers, the
reference on real torch), and start-up prints nothing the user did not ask for."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from first_imports import module_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = os.path.join(ROOT, "tests", "first_imports.py")


def run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=1200, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.parametrize("side", ["package", "reference"])
def test_every_module_imports_first_in_a_fresh_process_and_prints_nothing(side):
    sweep = run(SWEEP, side)
    assert sweep.returncode == 0 and not sweep.stderr, sweep.stderr[-3000:]
    results = [json.loads(line) for line in sweep.stdout.splitlines()]
    assert [result["module"] for result in results] == module_names(side)
    failed = {result["module"]: result["error"] for result in results if result["error"]}
    assert not failed, "\n\n".join(f"{name}:\n{error[-1500:]}" for name, error in failed.items())
    printed = {result["module"]: result["output"] for result in results if result["output"]}
    assert not printed, printed


def test_the_sweep_splits_the_package_where_the_package_does():
    import ms_ptuning
    from first_imports import TORCH_SIDE

    assert TORCH_SIDE == ms_ptuning.TORCH_SIDE


def test_the_sweep_covers_every_file_of_the_package():
    files = sum(1 for _, _, names in os.walk(os.path.join(ROOT, "ms_ptuning")) for name in names
                if name.endswith(".py"))
    assert len(module_names("package")) + len(module_names("reference")) == files
    assert "ms_ptuning.models.sequence_classification" in module_names("package")
    assert "ms_ptuning.reference.models.sequence_classification" in module_names("reference")
    assert "ms_ptuning.comparison.torch_side" in module_names("reference")


def test_command_help_prints_no_third_party_notice():
    result = run("-m", "ms_ptuning.run", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-2000:]
    assert result.stderr == ""


def test_torch_imported_before_the_package_is_a_clear_error():
    result = run("-c", "import torch; import ms_ptuning.models")
    assert result.returncode == 1
    assert "ImportError: ms_ptuning runs on MindSpore through mindnlp, which must be imported before torch" in (
        result.stderr)


def test_backend_leaves_diffusers_unloaded_yet_importable():
    import mindnlp

    assert "diffusers" not in sys.modules and not hasattr(mindnlp, "diffusers")  # mindnlp's star import skipped
    assert hasattr(importlib.import_module("mindnlp.diffusers"), "DiffusionPipeline")  # a user's own import works
