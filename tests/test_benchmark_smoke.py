"""The benchmark harness runs end to end on a tiny config (timings themselves are not tested)."""

import json

from benchmarks.ops import OPERATORS, main as operators_main
from benchmarks.run import markdown, measure


def test_harness_measures_both_sides_and_folding():
    result = measure("tiny_prefix", steps=1, warmup=0, threads=1)
    for key in ("ms_train_s", "torch_train_s", "ms_infer_s", "torch_infer_s", "ms_infer_folded_s",
                "ms_peak_rss_mb", "torch_peak_rss_mb"):
        assert result[key] > 0, key
    assert result["train_ratio"] == result["ms_train_s"] / result["torch_train_s"]
    assert "| tiny_prefix |" in markdown([result], "header")


def test_operator_benchmark_times_every_operator_on_both_sides(tmp_path):
    assert operators_main(["--threads", "1", "--repeats", "1", "--output_dir", str(tmp_path)]) == 0
    with open(tmp_path / "ops.json") as handle:
        rows = json.load(handle)["rows"]
    assert [row["operator"] for row in rows] == list(OPERATORS)
    for row in rows:
        assert all(row[f"{side}_{kind}_ms"] > 0 for side in ("ms", "torch") for kind in ("forward", "backward"))
    assert (tmp_path / "ops.md").read_text().count("\n| ") == len(OPERATORS) + 1
