"""Execute the chapter notebooks in parallel, once, into the book's jupyter-cache.

``make test-nb`` and ``make book`` run this before ``jupyter-book build``. Every
notebook named on the command line is executed from the top with nbclient (the
same call, ``jupyter_cache.executors.utils.single_nb_execution``, that myst-nb
makes in ``execute_notebooks: cache`` mode), with the timeout of ``_config.yml``
and errors not allowed, ``--jobs`` notebooks at a time. Each notebook that runs
to the end is stored, with its outputs, in the jupyter-cache that the book build
reads (``execute.cache`` of ``_config.yml``, by default ``_build/.jupyter_cache``),
overwriting what an earlier run stored, so the build takes the outputs from
there instead of executing the notebook a second time.

Every notebook is executed on every call, whatever the cache holds: the cache
is keyed on the notebook's code only, and a change to the package must rerun
the chapters. The exit status is 1 if any notebook failed; its traceback is
printed. Times are printed per notebook, slowest first; the chapters' budget
(60 s each on a 2-core machine) is checked by ``make bench``.

Usage: ``python tools/execute_notebooks.py [--jobs N] [--cache DIR] book/01_x.ipynb ...``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / "_build" / ".jupyter_cache"


def book_settings(config_path: Path = REPO_ROOT / "_config.yml") -> tuple[Path, int]:
    """The jupyter-cache folder and the cell timeout (s) that the book build uses."""
    execute = yaml.safe_load(config_path.read_text(encoding="utf-8")).get("execute", {}) or {}
    cache = execute.get("cache") or ""
    path = (config_path.parent / cache).resolve() if cache else DEFAULT_CACHE
    return path, int(execute.get("timeout", 30))


def execute_one(path: str, timeout: int) -> tuple[str, str | None, str | None, float]:
    """Run one notebook in a kernel started in its folder.

    Returns (path, executed notebook as JSON or None, traceback or None, seconds).
    """
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    result = single_nb_execution(
        notebook,
        cwd=str(Path(path).parent.resolve()),
        timeout=timeout,
        allow_errors=False,
        meta_override=True,
    )
    seconds = time.perf_counter() - start
    if result.err is not None:
        return path, None, result.exc_string or repr(result.err), seconds
    return path, nbformat.writes(notebook), None, seconds


def previous_seconds(cache) -> dict[str, float]:
    """How long the last cached run of each notebook took, by path: slow notebooks start first."""
    seconds: dict[str, float] = {}
    for record in sorted(cache.list_cache_records(), key=lambda r: r.created):
        seconds[record.uri] = float((record.data or {}).get("execution_seconds", 0.0))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="notebooks executed at the same time (default: the number of CPUs)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the jupyter-cache folder (default: the book's, from _config.yml)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache_path, timeout = book_settings()
    cache_path = args.cache.resolve() if args.cache else cache_path
    cache = get_cache(str(cache_path))
    before = previous_seconds(cache)
    notebooks = sorted((p.resolve() for p in args.notebooks),
                       key=lambda p: -before.get(str(p), 0.0))
    print(f"executing {len(notebooks)} notebooks, {args.jobs} at a time, into {cache_path}",
          flush=True)
    start = time.perf_counter()
    times: dict[str, float] = {}
    failed: list[str] = []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [pool.submit(execute_one, str(p), timeout) for p in notebooks]
        for future in concurrent.futures.as_completed(futures):
            path, executed, error, seconds = future.result()
            name = os.path.relpath(path, REPO_ROOT)
            times[name] = seconds
            if error is not None:
                failed.append(name)
                print(f"FAILED {name} after {seconds:.1f} s\n{error}", flush=True)
                continue
            record = cache.add_nb_to_project(path)
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(executed, as_version=4), record.uri,
                              data={"execution_seconds": seconds}),
                check_validity=False,
                overwrite=True,
            )
            print(f"ok {name} {seconds:.1f} s", flush=True)
    wall = time.perf_counter() - start
    print(f"{len(notebooks) - len(failed)} of {len(notebooks)} notebooks ran in {wall:.0f} s "
          f"(sum of their times {sum(times.values()):.0f} s); slowest first:")
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:6.1f} s  {name}")
    if failed:
        print(f"{len(failed)} notebooks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
