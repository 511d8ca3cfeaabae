"""Tests for bncourse.bench: the harness logic on tiny sizes (no assertion on any timing)."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
import torch

from bncourse.bench import suite as bench


def assert_valid_row(row, judged):
    for key in ("figure", "config", "numerator", "denominator", "ratio", "per_round",
                "of_medians", "of_mins", "median_s", "min_s"):
        assert key in row
    assert row["per_round"][0] <= row["ratio"] == row["per_round"][1] <= row["per_round"][2]
    if judged:
        op, bound = bench.GOALS[row["section"]]
        assert row["goal"] == f"{op} {bound:g}"
        assert row["met"] == (row["ratio"] <= bound if op == "<=" else row["ratio"] >= bound)
    else:
        assert row["goal"] is None and row["met"] is None


# --------------------------------------------------------------------------- statistics

def test_ratio_summary_pairs_rounds_and_reports_three_ratios():
    rng = np.random.default_rng(0)
    den = rng.uniform(1.0, 2.0, size=9)
    num = den * rng.uniform(1.5, 2.5, size=9)
    summary = bench.ratio_summary(num, den)
    per_round = num / den
    assert summary["ratio"] == pytest.approx(np.median(per_round))
    assert summary["per_round"] == pytest.approx(np.percentile(per_round, [25, 50, 75]))
    assert summary["of_medians"] == pytest.approx(np.median(num) / np.median(den))
    assert summary["of_mins"] == pytest.approx(num.min() / den.min())


def test_ratio_summary_is_robust_to_a_burst_on_one_side():
    den = np.full(11, 1e-3)
    num = 2 * den
    num[3] = 1.0        # one round hit by load on the numerator only
    assert bench.ratio_summary(num, den)["ratio"] == pytest.approx(2.0)


@pytest.mark.parametrize("num, den", [([1.0, 2.0], [1.0]), ([], []), ([1.0, 0.0], [1.0, 1.0]),
                                      ([1.0, np.nan], [1.0, 1.0])])
def test_ratio_summary_rejects_bad_durations(num, den):
    with pytest.raises(ValueError, match="ratio_summary: num, den must be"):
        bench.ratio_summary(num, den)


@pytest.mark.parametrize("quartiles, margin, expected", [
    ([1.30, 1.40, 1.50], 0.05, "slower"),
    ([0.60, 0.70, 0.80], 0.05, "faster"),
    ([0.97, 1.01, 1.04], 0.05, "same"),
    ([0.80, 1.02, 1.30], 0.05, "same"),        # noisy but centred on 1
    ([0.90, 1.20, 1.60], 0.05, "unclear"),     # probably slower, too noisy to say
    ([1.03, 1.04, 1.06], 0.0, "slower"),       # no margin: any consistent difference
])
def test_classify_ratio(quartiles, margin, expected):
    assert bench.classify_ratio({"per_round": quartiles}, margin) == expected


@pytest.mark.parametrize("margin, exc", [(-0.1, ValueError), (1.0, ValueError),
                                         ("0.05", TypeError), (True, TypeError)])
def test_classify_ratio_rejects_bad_margin(margin, exc):
    with pytest.raises(exc, match="classify_ratio: margin must be a float in"):
        bench.classify_ratio({"per_round": [1, 1, 1]}, margin)


def test_torch_threads_restores_the_previous_setting():
    before = torch.get_num_threads()
    with bench.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# --------------------------------------------------------------------------- sections

def test_numpy_vs_torch_on_a_tiny_input():
    section = bench.numpy_vs_torch((6, 3), repeats=2, settle_s=0.0)
    assert section["name"] == "numpy" and len(section["rows"]) == 2
    assert_valid_row(section["rows"][0], judged=True)
    assert_valid_row(section["rows"][1], judged=False)
    experiment = section["experiments"][0]
    assert experiment["shape"] == [6, 3]
    assert set(experiment["timings"]) == {"numpy", "torch_1", "numpy_2", "torch_all"}
    assert all(t["rounds"] == 2 for t in experiment["timings"].values())
    assert {"before", "after"} <= set(section["load"])


def test_numpy_vs_torch_without_all_threads_has_one_judged_row():
    section = bench.numpy_vs_torch((4, 2, 3), repeats=1, all_threads=False)
    assert [r["goal"] is not None for r in section["rows"]] == [True]


def test_graph_vs_closed_row_is_judged_against_its_goal():
    section = bench.graph_vs_closed((5, 2, 3), repeats=2)
    (row,) = section["rows"]
    assert (row["numerator"], row["denominator"]) == ("graph", "closed")
    assert_valid_row(row, judged=True)


def test_training_figure_compares_the_course_bn_with_torch_and_no_bn():
    section = bench.training_figure(repeats=2, width=8, depth=2, batch=6)
    judged, reported = section["rows"]
    assert (judged["numerator"], judged["denominator"]) == ("course_bn", "nn_bn")
    assert (reported["numerator"], reported["denominator"]) == ("nn_bn", "no_bn")
    assert_valid_row(judged, judged=True)
    assert_valid_row(reported, judged=False)


def test_mlp_trio_differs_only_in_the_normalization_layers():
    trio = bench.mlp_trio(5, [4, 4], seed=3)
    linears = {k: [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
               for k, model in trio.items()}
    for a, b in zip(linears["nn_bn"], linears["no_bn"]):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    for a, b in zip(linears["course_bn"], linears["no_bn"]):
        assert torch.equal(a.weight, b.weight)


def test_inference_figure_folds_exactly_and_judges_folded_against_no_bn():
    section = bench.inference_figure(repeats=2, batches=(1, 3), width=6, depth=3)
    assert len(section["rows"]) == 4
    for row in section["rows"]:
        judged = row["numerator"] == "folded"
        assert row["denominator"] == "no_bn"
        assert_valid_row(row, judged=judged)
    for experiment in section["experiments"]:
        assert experiment["max_abs_error_folded"] < 1e-5


def test_memory_figure_counts_the_cache_and_the_peaks():
    section = bench.memory_figure(shapes=((64, 8), (4, 3, 5, 5)))
    for e in section["experiments"]:
        n, c = e["shape"][:2]
        x_bytes = 4 * int(np.prod(e["shape"]))
        assert e["input_bytes"] == x_bytes
        # x_hat (the size of x) plus inv_std and gamma (C floats each)
        assert e["cache_bytes"] == x_bytes + 2 * 4 * c
        assert e["cache_over_input"] == pytest.approx(e["cache_bytes"] / x_bytes)
        # the forward holds at least y and x_hat; forward + backward also dx
        assert e["peak_forward_bytes"] >= 2 * x_bytes
        assert e["peak_forward_backward_bytes"] >= 3 * x_bytes
        assert e["peak_forward_backward_over_input"] >= e["peak_forward_over_input"]


@pytest.mark.parametrize("call, match", [
    (lambda: bench.numpy_vs_torch((4,), repeats=1), "numpy_vs_torch: shape must be"),
    (lambda: bench.graph_vs_closed((1, 3), repeats=1), "at least 2 values per channel"),
    (lambda: bench.graph_vs_closed((4, 3), repeats=0), "graph_vs_closed: repeats must be"),
    (lambda: bench.run(only=["bogus"]), "run: only must be names from"),
    (lambda: bench.training_steps({}, torch.zeros(2, 2), torch.zeros(2)), "models must be"),
])
def test_errors_name_the_function_and_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --------------------------------------------------------------------------- notebooks

def test_notebook_times_reports_time_and_failures(tmp_path):
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1 + 1\nprint(x)")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('boom')")])
    for name, nb in (("01_good.ipynb", good), ("02_bad.ipynb", bad)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, tmp_path / name)
    before = (tmp_path / "01_good.ipynb").read_text()
    section = bench.notebook_times(sorted(tmp_path.glob("*.ipynb")), timeout=60)
    good_row, bad_row = section["rows"]
    assert good_row["config"] == "01_good.ipynb" and good_row["error"] is None
    assert good_row["met"] == (good_row["seconds"] <= 60) and good_row["seconds"] > 0
    assert good_row["cells_seconds"] is not None
    assert good_row["cells_seconds"] <= good_row["seconds"]
    assert bad_row["met"] is False and "boom" in bad_row["error"]
    text = bench.to_markdown({"sections": {"notebooks": section}})
    assert "Goals met: 1 of 2. Not met:" in text and "02_bad.ipynb" in text
    assert (tmp_path / "01_good.ipynb").read_text() == before   # outputs are not written


# --------------------------------------------------------------------------- reports

def synthetic_results():
    """Two sections built from fabricated durations with known ratios."""
    den = np.full(5, 1e-3)
    rows = [bench._row("training", "slow step", "tiny", {"a": 2 * den, "b": den}, "a", "b",
                       judged=True),
            bench._row("training", "fast step", "tiny", {"a": den, "b": den}, "a", "b",
                       judged=False)]
    load = {"loadavg_1m": 1.0, "loadavg_5m": 1.0, "loadavg_15m": 1.0, "cpu_count": 2}
    section = {"name": "training", "title": "Training step", "experiments": [], "rows": rows,
               "seconds": 0.1, "measured_at": "2026-01-01T00:00:00",
               "load": {"before": load, "after": load}}
    memory = bench.memory_figure(shapes=((8, 2),))
    return {"meta": {"generated_at": "now"}, "sections": {"training": section, "memory": memory}}


def test_rows_compute_the_goal_from_the_ratio():
    rows = synthetic_results()["sections"]["training"]["rows"]
    assert rows[0]["ratio"] == pytest.approx(2.0) and rows[0]["met"] is False   # goal <= 1.3
    assert rows[1]["ratio"] == pytest.approx(1.0) and rows[1]["met"] is None


def test_markdown_has_every_section_row_and_verdict():
    results = synthetic_results()
    results["sections"] = dict(reversed(list(results["sections"].items())))  # memory first
    text = bench.to_markdown(results)
    assert text.index("## Training step") < text.index("## Peak memory")   # canonical order
    assert "## Training step" in text and "## Peak memory" in text
    assert "slow step" in text and "fast step" in text
    assert "| 2.00 |" in text and "<= 1.3 | **no** |" in text
    assert "load average (1 min) 1.00 before" in text
    assert "Goals met: 0 of 1. Not met:" in text
    assert "- slow step, tiny: 2.00 (goal <= 1.3)" in text
    table_lines = [line for line in text.splitlines() if line.startswith("| slow step")]
    assert len(table_lines) == 1 and table_lines[0].count("|") == 11


def test_write_results_writes_valid_json_and_merges_sections(tmp_path):
    results = synthetic_results()
    json_path, md_path = bench.write_results(results, tmp_path)
    data = json.loads(json_path.read_text())
    assert set(data["sections"]) == {"training", "memory"}
    assert data["sections"]["training"]["rows"][0]["ratio"] == pytest.approx(2.0)
    assert md_path.read_text() == bench.to_markdown(data)
    # A later partial run replaces its own section and keeps the others.
    partial = {"meta": {"generated_at": "later"},
               "sections": {"memory": bench.memory_figure(shapes=((4, 2),))}}
    bench.write_results(partial, tmp_path)
    merged = json.loads(json_path.read_text())
    assert set(merged["sections"]) == {"training", "memory"}
    assert merged["sections"]["memory"]["experiments"][0]["shape"] == [4, 2]
    assert merged["meta"]["generated_at"] == "later"


def test_run_and_main_on_a_cheap_section(tmp_path, capsys):
    results = bench.run(only=["memory"], quick=True, progress=None)
    assert list(results["sections"]) == ["memory"]
    assert results["meta"]["sections_run"] == ["memory"]
    assert bench.main(["--only", "memory", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Peak memory" in out
    assert json.loads((tmp_path / "bench.json").read_text())["sections"]["memory"]


@pytest.mark.parametrize("argv", [["--only", "bogus"], ["--notebooks", "--only", "numpy"]])
def test_main_rejects_bad_selections(argv, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert "error" in capsys.readouterr().err
