"""The package's shape, read statically from its source: no import cycle (lazy imports counted), short
functions, a torch reference that mirrors the package file for file and never imports the MindSpore stack."""

import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "ms_ptuning"
REFERENCE = PACKAGE / "reference"
MAX_FUNCTION_LINES = 50
LONG_FUNCTION_NOTE = "# over 50 lines:"  # the comment line right above a longer function, followed by why


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported_modules(name: str) -> set:
    """Every ms_ptuning module `name` imports, at the top or inside a function (a lazy import is still an
    import: moving it into a function to dodge a cycle leaves the cycle), each with the packages Python runs
    first to reach it, except those `name` itself lives in (already being imported when `name` runs)."""
    own_package = name if is_package(name) else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    edges = set()
    for target in (t for t in targets if t in MODULES):
        parts = target.split(".")
        edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    return {edge for edge in edges if edge in MODULES and edge not in own_ancestors}


def find_cycle(graph: dict) -> list | None:
    """One import cycle as [a, b, ..., a], or None. Depth-first search with an explicit path."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor, path + [successor])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_import_cycle_inside_the_package():
    graph = {name: imported_modules(name) for name in MODULES}
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))


def test_the_cycle_finder_sees_lazy_imports_and_package_inits(tmp_path, monkeypatch):
    """The check itself: a head registry importing a probe that imports the registry's package back (the
    layout this package had, with the import hidden in a function) is a cycle; siblings importing each
    other through their own package are not."""
    files = {"ms_ptuning/__init__.py": "", "ms_ptuning/models/__init__.py": "from .heads import Head\n",
             "ms_ptuning/models/heads.py": "from .base import Base\nclass Head(Base): pass\n",
             "ms_ptuning/models/base.py": "class Base: pass\n", "ms_ptuning/lama/__init__.py": "",
             "ms_ptuning/lama/probe.py": "from ..models.base import Base\n"}
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "ms_ptuning")
    modules = {module_name(path): path for path in (tmp_path / "ms_ptuning").rglob("*.py")}
    monkeypatch.setattr(sys.modules[__name__], "MODULES", modules)
    assert find_cycle({name: imported_modules(name) for name in modules}) is None
    (tmp_path / "ms_ptuning/models/heads.py").write_text(
        "from .base import Base\ndef probe():\n    from ..lama.probe import Probe\n")
    cycle = find_cycle({name: imported_modules(name) for name in modules})
    assert cycle and "ms_ptuning.lama.probe" in cycle and "ms_ptuning.models" in cycle


def long_functions(path: pathlib.Path) -> list:
    """(name, lines) of every function or method over the limit without a note saying why."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        length = node.end_lineno - node.lineno + 1
        first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
        note = lines[first - 2].strip() if first >= 2 else ""
        explained = note.startswith(LONG_FUNCTION_NOTE) and len(note) > len(LONG_FUNCTION_NOTE) + 3
        if length > MAX_FUNCTION_LINES and not explained:
            found.append((f"{module_name(path)}.{node.name}", length))
    return found


def test_every_function_is_at_most_50_lines_unless_a_note_says_why():
    offenders = [entry for path in MODULES.values() for entry in long_functions(path)]
    assert not offenders, offenders


def test_the_length_check_counts_decorators_and_accepts_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "package")
    body = "".join(f"    x{i} = {i}\n" for i in range(50))
    source = tmp_path / "m.py"
    source.write_text(f"@property\ndef long():\n{body}\ndef short():\n    return 1\n")
    assert long_functions(source) == [("m.long", 51)]
    source.write_text(f"{LONG_FUNCTION_NOTE} one table of 50 names, split it and it reads worse\n"
                      f"@property\ndef long():\n{body}")
    assert long_functions(source) == []


MIRRORED = ("hf_backbone.py", "layers.py", "encoders", "modes", "models")
NOTHING_TO_MIRROR = {"encoders/folding.py"}  # compiling/folding MindSpore encoders: torch needs neither


def python_files(root: pathlib.Path, part: str) -> set:
    if part.endswith(".py"):
        return {part} if (root / part).exists() else set()
    return {str(path.relative_to(root)) for path in (root / part).rglob("*.py")}


@pytest.mark.parametrize("part", MIRRORED)
def test_reference_mirrors_the_package_file_for_file(part):
    assert python_files(REFERENCE, part) == python_files(PACKAGE, part) - NOTHING_TO_MIRROR


def head_names(root: pathlib.Path) -> dict:
    """file → the `head_name` its head class declares."""
    names = {}
    for path in (root / "models").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["head_name"]:
                if isinstance(node.value, ast.Constant) and node.value.value:
                    names[path.name] = node.value.value
    return names


def test_reference_heads_carry_the_package_heads_names():
    assert head_names(REFERENCE) == head_names(PACKAGE)
    assert len(head_names(PACKAGE)) == 7


# what the reference may import of the package: itself, and two files of plain Python / plain torch API
ALLOWED_IN_REFERENCE = ("ms_ptuning.reference", "ms_ptuning.config", "ms_ptuning.deberta_prefix")


def test_reference_never_imports_the_mindspore_stack():
    """After `import mindnlp`, `import torch` is mindtorch: the reference process must never get there."""
    for name in (n for n in MODULES if n.startswith("ms_ptuning.reference")):
        inside = imported_modules(name) - {"ms_ptuning"}  # the package's __init__ imports nothing
        assert all(any(m == a or m.startswith(a + ".") for a in ALLOWED_IN_REFERENCE) for m in inside), (name, inside)
        tree = ast.parse(MODULES[name].read_text())
        external = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        external |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module}
        assert not external & {"mindspore", "mindnlp", "mindtorch"}, name
