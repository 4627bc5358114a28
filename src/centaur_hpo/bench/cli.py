"""The ``centaur bench`` and ``centaur report`` commands.

centaur bench --methods random,tpe,cmaes --seeds 0-4 --tasks bbob:f1:d5:i1 --budget 24h --jobs 2
centaur bench --preset paper --jobs 2
centaur report bench-out -o report.html
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from centaur_hpo.bench.grid import (
    GridSpec,
    absolute_storage,
    load_config,
    spec_from_config,
    write_grid_file,
)
from centaur_hpo.bench.presets import PRESETS
from centaur_hpo.study import format_duration


def register_cli(sub: Any) -> None:
    b = sub.add_parser(
        "bench",
        help="run a benchmark grid: methods x seeds x tasks, one study per cell (resumable)",
        description="Run every (method, seed, task) cell as one study in one storage. Running "
        "the same command again runs only the missing or unfinished cells.",
    )
    b.add_argument("--methods", help="comma-separated methods (see `centaur methods`)")
    b.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,1,7")
    b.add_argument(
        "--tasks",
        help="comma-separated tasks, each NAME or ALIAS=SPEC (bbob:f1:d5:i1, a simulated task, "
        "cpu-gpt, a script path, fn:FILE.py:FACTORY)",
    )
    b.add_argument("--budget", help="budget per cell on the budget clock, e.g. 24h")
    b.add_argument("--trials", type=int, help="trials per cell (alone or with --budget)")
    b.add_argument("--clock", choices=("training", "wall"), help="budget clock (default training)")
    b.add_argument(
        "--failure-value", type=float, help="value failed trials are told as (paper: 100)"
    )
    b.add_argument("--failure-policy", choices=("penalty", "constraint", "ignore"))
    b.add_argument("--no-default-first", action="store_true", help="do not run the default first")
    b.add_argument("--llm", help="LLM for LLM methods (default: the embedded model)")
    b.add_argument(
        "--replay",
        help="replay LLM calls: a folder of <cell>.jsonl cassettes or the storage URL of an "
        "earlier grid",
    )
    b.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="method option, e.g. --option centaur.ratio=0.3 (repeatable)",
    )
    b.add_argument("--config", help="grid TOML file (flags override it)")
    b.add_argument("--preset", choices=sorted(PRESETS), help="a ready-made grid (paper)")
    b.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/bench.db)")
    b.add_argument("--out", help="output folder (default bench-out, or the preset's)")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--jobs", type=int, help="cells in parallel on local processes (default 1)")
    g.add_argument("--dask-scheduler", help="run cells on a Dask cluster at this address")
    b.add_argument("--report", action="store_true", help="write OUT/report.html when done")
    b.add_argument("--dry-run", action="store_true", help="list the cells and their state only")
    b.set_defaults(handler=cmd_bench)

    r = sub.add_parser(
        "report",
        help="write an HTML report (plus CSV/Markdown tables) of a benchmark grid",
    )
    r.add_argument("source", help="grid output folder, SQLite file or storage URL")
    r.add_argument("-o", "--output", default="report.html", help="HTML path (default report.html)")
    r.set_defaults(handler=cmd_report)


def _parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise ValueError(f"--option {item!r}: write METHOD.KEY=VALUE, e.g. centaur.ratio=0.3")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


def grid_from_args(args: argparse.Namespace) -> tuple[GridSpec, dict[str, Any]]:
    """Preset, then config file, then flags: each later source overrides the earlier."""
    data: dict[str, Any] = {}
    if args.preset:
        data.update(PRESETS[args.preset]())
    if args.config:
        data.update(load_config(args.config))
    flags = {
        "methods": args.methods,
        "seeds": args.seeds,
        "tasks": args.tasks,
        "budget": args.budget,
        "trials": args.trials,
        "clock": args.clock,
        "failure_value": args.failure_value,
        "failure_policy": args.failure_policy,
        "llm": args.llm,
        "replay": args.replay,
        "storage": args.storage,
        "out": args.out,
        "jobs": args.jobs,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.no_default_first:
        data["default_first"] = False
    opts = _parse_options(args.option)
    if opts:
        merged = dict(data.get("method_options", {}))
        for m, o in opts.items():
            merged[m] = {**merged.get(m, {}), **o}
        data["method_options"] = merged
    spec = spec_from_config(data)
    spec.validate()
    return spec, data


def cmd_bench(args: argparse.Namespace) -> int:
    from centaur_hpo.bench.executors import executor_for
    from centaur_hpo.bench.grid import cell_state
    from centaur_hpo.bench.store import open_bench_storage

    spec, data = grid_from_args(args)
    out = Path(data.get("out") or "bench-out")
    out.mkdir(parents=True, exist_ok=True)
    storage = absolute_storage(data.get("storage") or f"sqlite:///{(out / 'bench.db').resolve()}")
    command = "centaur " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    jobs = spec.jobs(storage, out)
    st = open_bench_storage(storage)
    states = {j.name: cell_state(st, j) for j in jobs}  # also rejects changed settings early
    todo = [j for j in jobs if states[j.name] != "done"]
    print(
        f"grid: {len(jobs)} cells ({len(jobs) - len(todo)} done, {len(todo)} to run) in {storage}",
        flush=True,
    )
    if args.dry_run:
        for j in jobs:
            print(f"  {states[j.name]:<8} {j.name}")
        return 0
    write_grid_file(out, spec, storage, command)
    run = executor_for(int(data.get("jobs") or 1), args.dask_scheduler)
    t0 = time.monotonic()
    errors = 0
    for i, res in enumerate(run(todo), 1):
        best = f"best {res.best_value:.6g}" if res.best_value is not None else ""
        extra = f"  {res.message}" if res.message else ""
        print(
            f"[{i}/{len(todo)}] {res.status:<7} {res.name}  {res.n_trials} trials {best} "
            f"({res.seconds:.1f}s){extra}",
            flush=True,
        )
        errors += res.status == "error"
    print(
        f"grid finished in {format_duration(time.monotonic() - t0)}; {errors} cell(s) failed",
        flush=True,
    )
    if args.report:
        from centaur_hpo.bench.report import write_report

        paths = write_report(str(out), out / "report.html", command)
        print(f"report {paths[0]}")
    return 1 if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from centaur_hpo.bench.report import write_report

    paths = write_report(args.source, args.output, None)
    for p in paths:
        print(f"wrote {p}")
    return 0
