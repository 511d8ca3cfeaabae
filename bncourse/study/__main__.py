"""``python -m bncourse.study``: list, run, status, export, verify.

::

    python -m bncourse.study list
    python -m bncourse.study run 14 15 --scale book --workers 2
    python -m bncourse.study run 13 --scale study --scheduler tcp://10.0.0.5:8786
    python -m bncourse.study status
    python -m bncourse.study export --out book/results
    python -m bncourse.study verify --sample 5
    python -m bncourse.study bench --out study-bench.json

``run`` takes ledger ids or experiment names. Before it runs anything it
imports the committed snapshot (``--snapshot``, default ``book/results``) into
the store, so runs already committed are never run again; runs already in the
store are skipped too. Kill it at any moment and run the same command again:
it goes on from the runs stored. ``verify`` exits with status 1 when a run does
not reproduce.
"""

from __future__ import annotations

import argparse
import sys

from bncourse.study.claims import CLAIMS
from bncourse.study.experiments import SCALES, experiments_for, registry
from bncourse.study.runner import plan, run_study
from bncourse.study.snapshot import DEFAULT_DIR, export, load, verify
from bncourse.study.store import Store

DEFAULT_STORE = "study.sqlite"


def _cmd_list(args) -> int:
    reg = registry()
    for cid, claim in sorted(CLAIMS.items()):
        print(f"{cid:2d}  {claim.statement}")
        print(f"    {claim.kind}; {claim.metric}, {claim.alternative}, threshold "
              f"{claim.threshold:g}")
        for name in claim.experiments:
            exp = reg.get(name)
            if exp is None:
                print(f"    - {name}: not registered yet")
                continue
            counts = ", ".join(f"{s} {len(exp.runs(s))}" for s in SCALES)
            print(f"    - {name} v{exp.version}: runs per scale: {counts}")
    extra = sorted(set(reg) - {n for c in CLAIMS.values() for n in c.experiments})
    if extra:
        print("experiments outside the ledger: " + ", ".join(extra))
    return 0


def _import_snapshot(store: Store, snapshot_dir: str) -> int:
    return store.insert_many(load(snapshot_dir))


def _cmd_run(args) -> int:
    experiments = experiments_for(args.targets)
    tasks = plan(experiments, args.scale, args.device)
    with Store(args.store) as store:
        imported = _import_snapshot(store, args.snapshot)
        summary = run_study(tasks, store, workers=args.workers, scheduler=args.scheduler,
                            retry_failed=args.retry_failed, progress=not args.quiet)
    print(f"{summary.planned} runs planned, {summary.stored} already stored "
          f"({imported} taken from the snapshot), {summary.ran} run now: {summary.ok} ok, "
          f"{summary.diverged} diverged, {summary.failed} failed; {summary.seconds:.1f} s")
    return 0


def _cmd_status(args) -> int:
    reg = registry()
    with Store(args.store) as store:
        status = {k: r.status for r in store.records() for k in [r.key]}
    print(f"{'claim':>5s} {'scale':6s} {'done':>6s} {'failed':>6s} {'missing':>7s}  experiments")
    for cid in sorted(CLAIMS):
        names = [n for n in CLAIMS[cid].experiments if n in reg]
        if not names:
            print(f"{cid:5d} {'-':6s} {'':>6s} {'':>6s} {'':>7s}  none registered")
            continue
        for scale in SCALES:
            tasks = plan([reg[n] for n in names], scale)
            got = [status.get(t.key) for t in tasks]
            done = sum(s in ("ok", "diverged") for s in got)
            failed = sum(s == "failed" for s in got)
            print(f"{cid:5d} {scale:6s} {done:6d} {failed:6d} {len(got) - done - failed:7d}  "
                  + ", ".join(names))
    return 0


def _cmd_export(args) -> int:
    with Store(args.store) as store:
        for path in export(store, args.out):
            print(path)
    return 0


def _cmd_verify(args) -> int:
    checks = verify(load(args.snapshot), sample=args.sample, seed=args.seed,
                    max_seconds=args.max_seconds, device=args.device)
    if not checks:
        print(f"no committed runs to verify in {args.snapshot}")
        return 1
    for c in checks:
        r = c.committed
        word = "reproduced" if c.reproduced else f"NOT reproduced ({c.reason})"
        print(f"{r.experiment} v{r.version} seed {r.seed} {r.setting}: {word}")
    bad = sum(not c.reproduced for c in checks)
    print(f"{len(checks) - bad} of {len(checks)} committed runs reproduced exactly")
    return 1 if bad else 0


def _cmd_bench(args) -> int:
    import json

    from bncourse.study.bench import measure

    result = measure(runs=args.runs, rounds=args.rounds, snapshot=args.snapshot)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    """Entry point of ``python -m bncourse.study``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bncourse.study",
                                     description="Run the claims study into a results store.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every claim with its experiments and scales")
    run = sub.add_parser("run", help="run the experiments of claims (ids or experiment names)")
    run.add_argument("targets", nargs="+", metavar="CLAIM")
    run.add_argument("--scale", choices=SCALES, default="smoke")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2)
    where.add_argument("--scheduler", metavar="ADDRESS")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    run.add_argument("--store", default=DEFAULT_STORE)
    run.add_argument("--snapshot", default=DEFAULT_DIR)
    run.add_argument("--retry-failed", action="store_true")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    status = sub.add_parser("status", help="runs done, failed and missing per claim and scale")
    status.add_argument("--store", default=DEFAULT_STORE)
    exp = sub.add_parser("export", help="write the CSV snapshot the book reads")
    exp.add_argument("--store", default=DEFAULT_STORE)
    exp.add_argument("--out", required=True)
    ver = sub.add_parser("verify", help="re-run committed runs, require identical numbers")
    ver.add_argument("--sample", type=int, default=5)
    ver.add_argument("--snapshot", default=DEFAULT_DIR)
    ver.add_argument("--seed", type=int)
    ver.add_argument("--max-seconds", type=float)
    ver.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    bench = sub.add_parser("bench", help="measure the runner (what make bench judges)")
    bench.add_argument("--out", required=True, help="JSON file to write")
    bench.add_argument("--runs", type=int, default=40)
    bench.add_argument("--rounds", type=int, default=3)
    bench.add_argument("--snapshot", default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.command == "run" and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    command = {"list": _cmd_list, "run": _cmd_run, "status": _cmd_status,
               "export": _cmd_export, "verify": _cmd_verify, "bench": _cmd_bench}[args.command]
    try:
        return command(args)
    except ValueError as exc:          # a bad claim id, experiment name or snapshot: no traceback
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
