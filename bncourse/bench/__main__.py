"""``python -m bncourse.bench``: the course's benchmarks (see :mod:`bncourse.bench.suite`)."""

from bncourse.bench.suite import main

raise SystemExit(main())
