"""The study: claims registry, experiment registry, results store and the Dask runner.

``python -m bncourse.study`` (see :mod:`bncourse.study.__main__`) runs every
(experiment, setting, seed) of the claims of the ledger into an SQLite store
and exports the snapshot under ``book/results/`` that the book reads.

Modules: ``claims`` (the ledger as data), ``experiments`` (the registry and how
to add an experiment), ``registered`` (the registered experiments), ``store``
(the SQLite results store), ``provenance`` (commit, versions, device),
``runner`` (Dask distributed execution), ``snapshot`` (CSV export, import and
verify).
"""
