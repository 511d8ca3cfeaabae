"""The study section of make bench: rows judged from a measurement (never the timings)."""

from bncourse.bench import report
from bncourse.bench.study import GOALS, study_rows

MEASURED = {"experiment": "z_vs_a", "runs": 40, "rounds": 3,
            "walls": {"0": [4.0, 4.2, 4.1], "1": [4.4, 4.6, 6.0], "2": [2.4, 2.5, 4.0]},
            "inside": [4.1, 4.3, 5.5], "cached": 1.5}


def test_rows_are_the_medians_of_the_paired_rounds_against_their_goals():
    throughput, overhead, cached = study_rows(MEASURED)
    assert throughput["per_round"] == [4.4 / 2.4, 4.6 / 2.5, 6.0 / 4.0]
    assert throughput["value"] == 4.4 / 2.4 and throughput["met"] is True
    assert overhead["value"] == (4.4 - 4.0) / 40 and overhead["met"] is True   # 10 ms
    assert "runner alone 7.5 ms" in overhead["config"]
    assert cached["value"] == 1.5 and cached["met"] is True
    assert [r["goal"] for r in (throughput, overhead, cached)] == [">= 1.7", "<= 0.05", "<= 5"]
    assert set(GOALS) == {"throughput", "overhead", "cached"}


def test_missed_goals_are_reported():
    slow = {**MEASURED, "walls": {"0": [1.0], "1": [5.0], "2": [4.0]}, "inside": [4.9],
            "cached": 9.0}
    rows = study_rows(slow)
    assert [r["met"] for r in rows] == [False, False, False]
    section = {"name": "study", "title": "Study runner", "rows": rows, "experiments": [],
               "measured_at": "now", "load": {"before": {"loadavg_1m": 1.0, "cpu_count": 2},
                                             "after": {"loadavg_1m": 1.0, "cpu_count": 2}}}
    text = report.to_markdown({"sections": {"study": section}})
    assert "Goals met: 0 of 3." in text
    assert "fully cached re-run, run 15 --scale smoke, fresh process: 9 s (goal <= 5)" in text
    assert "| throughput, 2 workers / 1 worker |" in text
