"""One table of a hyperparameter search: every run directory `lr<LR>_psl<P>_ep<E>` under SEARCH_DIR with
its results.json (written by ms_ptuning.run) → SEARCH_DIR/results.tsv and results.md, best run first.

usage: python scripts/lib/results_table.py SEARCH_DIR [METRIC]
METRIC defaults to the run's own best-model metric (the `best_eval_*` key of results.json).
"""

import json
import os
import re
import sys

RUN_DIR = re.compile(r"^lr(?P<lr>[^_]+)_psl(?P<psl>\d+)_ep(?P<epochs>[^_]+)$")
COLUMNS = ("learning_rate", "pre_seq_len", "epochs", "metric", "value", "best_step", "status")


def best_value(results: dict, metric: str | None) -> tuple:
    """(metric name, value) from one results.json."""
    if metric:
        for key in (f"best_eval_{metric}", f"best_{metric}", f"eval_{metric}", metric):
            if key in results:
                return key, results[key]
        raise KeyError(f"metric {metric!r} not in results ({', '.join(sorted(results))})")
    keys = [key for key in results if key.startswith("best_eval_")]
    if not keys:
        raise KeyError(f"no best_eval_* key in results ({', '.join(sorted(results))})")
    return keys[0], results[keys[0]]


def collect(search_dir: str, metric: str | None) -> list:
    rows = []
    for name in sorted(os.listdir(search_dir)):
        match = RUN_DIR.match(name)
        if not match or not os.path.isdir(os.path.join(search_dir, name)):
            continue
        row = {"learning_rate": match["lr"], "pre_seq_len": match["psl"], "epochs": match["epochs"],
               "metric": "", "value": "", "best_step": "", "status": "ok"}
        path = os.path.join(search_dir, name, "results.json")
        try:
            with open(path) as handle:
                results = json.load(handle)
            row["metric"], value = best_value(results, metric)
            row["value"] = f"{value:.6g}"
            row["best_step"] = str(results.get("best_step", ""))
        except (OSError, ValueError, KeyError) as error:
            row["status"] = f"failed: {error}".replace("\t", " ").replace("|", "/").splitlines()[0]
        rows.append(row)
    failed = [row for row in rows if row["status"] != "ok"]
    done = sorted((row for row in rows if row["status"] == "ok"), key=lambda row: -float(row["value"]))
    return done + failed


def write_tables(search_dir: str, rows: list) -> None:
    with open(os.path.join(search_dir, "results.tsv"), "w") as handle:
        handle.write("\t".join(COLUMNS) + "\n")
        handle.writelines("\t".join(row[c] for c in COLUMNS) + "\n" for row in rows)
    with open(os.path.join(search_dir, "results.md"), "w") as handle:
        handle.write("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n")
        handle.writelines("| " + " | ".join(row[c] for c in COLUMNS) + " |\n" for row in rows)


def main(argv) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    search_dir, metric = argv[1], argv[2] if len(argv) == 3 else None
    rows = collect(search_dir, metric)
    if not rows:
        print(f"{search_dir}: no run directories (lr*_psl*_ep*)", file=sys.stderr)
        return 1
    write_tables(search_dir, rows)
    with open(os.path.join(search_dir, "results.md")) as handle:
        print(handle.read(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
