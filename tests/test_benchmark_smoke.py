"""The benchmark harness runs end to end on a tiny config through both step engines (timings themselves are
not tested), and its report says what ran where."""

import json

import pytest

from benchmarks.ops import OPERATORS, main as operators_main
from benchmarks.report import BEGIN, END, cpu_description, markdown, table_row, update_results
from benchmarks.run import measure


@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory):
    return measure("tiny_prefix", ["graph", "eager"], steps=1, warmup=0, threads=1, round_steps=1,
                   log_dir=str(tmp_path_factory.mktemp("logs")))


def test_harness_measures_every_backend_against_torch_with_folding(tiny_rows):
    assert [(row["case"], row["backend"], row["error"]) for row in tiny_rows] == [
        ("tiny_prefix", "graph", None), ("tiny_prefix", "eager", None)]
    for row in tiny_rows:
        for key in ("ms_train_s", "torch_train_s", "ms_infer_s", "torch_infer_s", "ms_infer_folded_s",
                    "ms_peak_rss_mb", "torch_peak_rss_mb"):
            assert row[key] > 0, (row["backend"], key)
        assert row["train_ratio"] == row["ms_train_s"] / row["torch_train_s"]
        assert row["rss_ratio"] == row["ms_peak_rss_mb"] / row["torch_peak_rss_mb"]
    graph, eager = tiny_rows
    assert graph["torch_train_s"] == eager["torch_train_s"]  # one torch reference per case, shared by the rows
    assert graph["compile_train_s"] > 0 and graph["compile_infer_s"] > 0  # GraphSteps compiled its graphs
    assert eager["compile_train_s"] is None
    # kernels counted from the compiled graphs: a train step launches the forward, the backward and AdamW
    assert graph["kernels_train"] > graph["kernels_infer"] > 0 and eager["kernels_train"] is None
    assert f"| {graph['kernels_train']} / {graph['kernels_infer']} |" in table_row(graph)
    assert {"mindspore", "mindnlp", "torch", "transformers"} <= set(graph["versions"])


def test_table_has_a_row_per_backend_and_states_the_targets(tiny_rows):
    table = markdown(tiny_rows, "header")
    assert "| tiny_prefix | graph |" in table and "| tiny_prefix | eager |" in table
    target = next(line for line in table.splitlines() if line.startswith("- tiny_prefix on graph:"))
    assert ("(met)" in target or "(not met)" in target) and "memory" in target


def test_a_side_that_fails_gets_a_row_saying_why():
    row = {"case": "gpt2_small_prefix", "backend": "graph", "error": "RuntimeError: the train step graph does not "
                                                                       "compile in GRAPH_MODE"}
    line = table_row(row)
    assert "not measured: RuntimeError" in line
    assert line.count("|") == table_row_cells() + 1
    assert "- gpt2_small_prefix" not in markdown([row], "header")  # no target for GPT-2
    assert "not measured" in markdown([{**row, "case": "tiny_prefix"}], "header").splitlines()[-1]


def table_row_cells() -> int:
    header_line = next(line for line in markdown([], "header").splitlines() if line.startswith("| case"))
    return header_line.count("|") - 1


def test_cpu_description_names_the_model_and_avx512(tmp_path):
    entry = "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse avx2 {}\n\nprocessor\t: 1\n"
    (tmp_path / "with").write_text(entry.format("avx512f avx512bw"))
    (tmp_path / "without").write_text(entry.format("fma"))
    assert cpu_description(str(tmp_path / "with")) == "Some CPU 9000, AVX-512 (avx512bw, avx512f)"
    assert cpu_description(str(tmp_path / "without")) == "Some CPU 9000, no AVX-512"


def test_update_results_replaces_only_the_generated_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\nprose before\n{BEGIN}\nold table\n{END}\nprose after\n")
    update_results(str(path), "new table\n")
    assert path.read_text() == f"# Results\nprose before\n{BEGIN}\nnew table\n{END}\nprose after\n"
    (tmp_path / "plain.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no generated section"):
        update_results(str(tmp_path / "plain.md"), "table\n")


def test_operator_benchmark_times_every_operator_on_both_sides(tmp_path):
    assert operators_main(["--threads", "1", "--repeats", "1", "--output_dir", str(tmp_path)]) == 0
    with open(tmp_path / "ops.json") as handle:
        rows = json.load(handle)["rows"]
    assert [row["operator"] for row in rows] == list(OPERATORS)
    for row in rows:
        assert all(row[f"{side}_{kind}_ms"] > 0 for side in ("ms", "torch") for kind in ("forward", "backward"))
    assert (tmp_path / "ops.md").read_text().count("\n| ") == len(OPERATORS) + 1
