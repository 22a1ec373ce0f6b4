"""The benchmark harness runs end to end on a tiny config (timings themselves are not tested)."""

from benchmarks.run import markdown, measure


def test_harness_measures_both_sides_and_folding():
    result = measure("tiny_prefix", steps=1, warmup=0, threads=1)
    for key in ("ms_train_s", "torch_train_s", "ms_infer_s", "torch_infer_s", "ms_infer_folded_s",
                "ms_peak_rss_mb", "torch_peak_rss_mb"):
        assert result[key] > 0, key
    assert result["train_ratio"] == result["ms_train_s"] / result["torch_train_s"]
    assert "| tiny_prefix |" in markdown([result], "header")
