"""Benchmarks of the course's code and of BN's cost, against PyTorch (``make bench``).

``python -m bncourse.bench`` runs them all and writes ``bench-results/``.

suite    the benchmarks, their goals and the command line
stats    paired ratios, medians and intervals of interleaved timings
report   the results as JSON and a Markdown table
timing   interleaved wall-clock timing on a shared machine
"""
