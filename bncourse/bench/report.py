"""The benchmark's results as a Markdown table and a JSON file (used by ``bncourse.bench``).

``results = {"meta": {...}, "sections": {name: section}}``, a *section* being
``{"name", "title", "experiments", "rows", "measured_at", "load", ...}`` as
built by ``bncourse.bench``.

Public API
----------
``to_markdown(results) -> str``
``write_results(results, out_dir="bench-results", merge=True) -> (json_path, md_path)``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["to_markdown", "write_results"]


# The order of the sections in the report (others follow in their own order).
ORDER = ("numpy", "graph", "training", "inference", "memory", "notebooks", "study")


def _ordered(sections: dict) -> list:
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(sections.items(), key=lambda item: rank.get(item[0], len(ORDER)))


def _shape_label(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.3f}"


def _met_text(met) -> str:
    return "" if met is None else ("yes" if met else "**no**")


def _load_text(section: dict) -> str:
    b, a = section["load"]["before"], section["load"]["after"]
    return (f"load average (1 min) {b['loadavg_1m']:.2f} before, {a['loadavg_1m']:.2f} after, "
            f"on {b['cpu_count']} cores")


def _describe(row) -> str:
    if "seconds" in row:    # a notebook
        got = f"{row['seconds']:.1f} s" + (f", error {row['error']}" if row.get("error") else "")
    elif "value" in row:    # a figure with its own unit (the study runner)
        got = f"{row['value']:.3g} {row['unit']}"
    else:
        got = f"{row['ratio']:.2f}"
    return f"{row['figure']}, {row['config']}: {got} (goal {row['goal']})"


def _goal_summary(sections: dict) -> list:
    """Lines saying how many judged figures met their goal, and which did not."""
    judged = [r for _, s in _ordered(sections) for r in s["rows"] if r.get("met") is not None]
    if not judged:
        return []
    missed = [r for r in judged if not r["met"]]
    lines = [f"Goals met: {len(judged) - len(missed)} of {len(judged)}."]
    if missed:
        lines[0] += " Not met:"
        lines += [""] + [f"- {_describe(r)}" for r in missed]
    return lines + [""]


def to_markdown(results: dict) -> str:
    """The results as Markdown: which goals are met, then one table per section with its load.

    Speed rows: the figure, its configuration, the two medians (and minima) in
    ms, the paired ratio (judged) with its quartiles, the ratio of the medians
    and of the minima, the goal and whether it is met.
    """
    lines = ["# bncourse benchmark", ""]
    meta = results.get("meta", {})
    if meta:
        lines += [f"Generated {meta.get('generated_at')} with Python {meta.get('python')}, "
                  f"NumPy {meta.get('numpy')}, torch {meta.get('torch')} on "
                  f"{meta.get('cpu_count')} cores ({meta.get('platform')}); "
                  f"OMP_NUM_THREADS={meta.get('omp_num_threads')}. Times are medians over "
                  "interleaved rounds (minimum in brackets). The judged ratio is the median "
                  "over rounds of the per-round ratio (paired ratio).",
                  ""]
    lines += _goal_summary(results.get("sections", {}))
    for name, section in _ordered(results.get("sections", {})):
        lines += [f"## {section['title']}", "",
                  f"Measured {section['measured_at']}; {_load_text(section)}.", ""]
        if name == "memory":
            lines += ["| input | dtype | input (MB) | cache / input | peak forward / input "
                      "| peak forward+backward / input |",
                      "|---|---|---:|---:|---:|---:|"]
            for e in section["experiments"]:
                lines.append(f"| {_shape_label(e['shape'])} | {e['dtype']} | "
                             f"{e['input_bytes'] / 1e6:.2f} | {e['cache_over_input']:.2f} | "
                             f"{e['peak_forward_over_input']:.2f} | "
                             f"{e['peak_forward_backward_over_input']:.2f} |")
        elif name == "notebooks":
            lines += ["| notebook | seconds (kernel start included) | cells only (s) | goal "
                      "| met | error |", "|---|---:|---:|---|---|---|"]
            for r in section["rows"]:
                cells = "" if r["cells_seconds"] is None else f"{r['cells_seconds']:.1f}"
                lines.append(f"| {r['config']} | {r['seconds']:.1f} | {cells} | {r['goal']} | "
                             f"{_met_text(r['met'])} | {r['error'] or ''} |")
        elif name == "study":
            lines += ["| figure | configuration | value | per round | goal | met |",
                      "|---|---|---:|---|---|---|"]
            for r in section["rows"]:
                rounds = ", ".join(f"{v:.3g}" for v in r.get("per_round", []))
                lines.append(f"| {r['figure']} | {r['config']} | {r['value']:.3g} {r['unit']} "
                             f"| {rounds} | {r['goal']} {r['unit']} | {_met_text(r['met'])} |")
        else:
            lines += ["| figure | configuration | numerator ms | denominator ms | paired "
                      "ratio | quartiles | ratio of medians | ratio of minima | goal | met |",
                      "|---|---|---:|---:|---:|---|---:|---:|---|---|"]
            for r in section["rows"]:
                num, den = r["numerator"], r["denominator"]
                q = r["per_round"]
                lines.append(
                    f"| {r['figure']} | {r['config']} | {_ms(r['median_s'][num])} "
                    f"({_ms(r['min_s'][num])}) | {_ms(r['median_s'][den])} "
                    f"({_ms(r['min_s'][den])}) | {r['ratio']:.2f} | "
                    f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} | {r['of_medians']:.2f} | "
                    f"{r['of_mins']:.2f} | {r['goal'] or ''} | {_met_text(r['met'])} |")
        lines.append("")
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_results(results: dict, out_dir="bench-results", merge: bool = True):
    """Write ``bench.json`` and ``bench.md`` into ``out_dir``; return their paths.

    With ``merge``, sections already in ``out_dir/bench.json`` that this run
    did not measure are kept, so ``--notebooks`` does not erase the rest.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "bench.json", out / "bench.md"
    combined = {"meta": results.get("meta", {}), "sections": dict(results.get("sections", {}))}
    if merge and json_path.exists():
        try:
            old = json.loads(json_path.read_text())
        except (OSError, ValueError):
            old = {}
        for name, section in old.get("sections", {}).items():
            combined["sections"].setdefault(name, section)
    json_path.write_text(json.dumps(combined, indent=2, default=_json_default, allow_nan=False)
                         + "\n")
    md_path.write_text(to_markdown(combined))
    return json_path, md_path
