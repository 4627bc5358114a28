"""Simulated trials per second through the real study loop, on autoresearch-sim.

Three rates, each the median of ``--rounds`` runs:

* the task function alone (``fn(config, number)``), an upper bound;
* ``StudyRunner`` + ``FunctionEvaluator`` with an in-memory Optuna storage;
* the same with a SQLite storage file (every trial is several committed transactions, so this
  rate is bound by the disk's fsync latency: put ``--sqlite-dir`` on tmpfs to see the difference).

Random search proposes, so the numbers measure the harness and the simulator, not an optimizer.

    python benchmarks/simulator_throughput.py --trials 300 --sqlite-trials 60 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.study import Budget, StudyRunner
from centaur_hpo.tasks.simulated import get_simulated_task

TASK = "autoresearch-sim"


def task_only(task: str, n: int) -> float:
    space, fn, _ = get_simulated_task(task, seed=0)
    rng = np.random.default_rng(0)
    configs = []
    for _ in range(n):
        c = {}
        for p in space:
            if p.type == "categorical":
                c[p.name] = p.choices[rng.integers(len(p.choices))]
            else:
                c[p.name] = space.from_unit(p.name, float(rng.random()))
        configs.append(space.repair(c))
    start = time.perf_counter()
    for i, c in enumerate(configs):
        fn(c, i)
    return n / (time.perf_counter() - start)


def through_runner(task: str, n: int, storage: str | None, seed: int) -> float:
    space, fn, info = get_simulated_task(task, seed=seed)
    study = optuna.create_study(
        storage=storage, study_name=f"bench-{seed}", sampler=make_sampler("random", space, seed)
    )
    runner = StudyRunner(study, FunctionEvaluator(space, fn, task, info), budget=Budget(n_trials=n))
    start = time.perf_counter()
    runner.run()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300, help="trials per in-memory round")
    ap.add_argument("--sqlite-trials", type=int, default=60, help="trials per SQLite round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sqlite-dir", help="folder for the SQLite file (default: a temp folder)")
    ap.add_argument("--task", default=TASK, help=f"simulated task (default {TASK})")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    fn_rates = [task_only(args.task, 2000) for _ in range(args.rounds)]
    mem_rates = [through_runner(args.task, args.trials, None, r) for r in range(args.rounds)]
    sql_rates = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=args.sqlite_dir) as d:
            url = f"sqlite:///{Path(d) / 'bench.db'}"
            sql_rates.append(through_runner(args.task, args.sqlite_trials, url, r))
    print(f"task: {args.task}, random search, {args.rounds} rounds (median)")
    print(f"  task function alone        {statistics.median(fn_rates):10.0f} trials/s")
    print(
        f"  StudyRunner, in-memory     {statistics.median(mem_rates):10.1f} trials/s "
        f"({args.trials} trials per round)"
    )
    print(
        f"  StudyRunner, SQLite        {statistics.median(sql_rates):10.1f} trials/s "
        f"({args.sqlite_trials} trials per round)"
    )
    if args.task != TASK:
        return
    day = 24 * 3600 / 330  # trials in a 24 h study of 5.5-minute successes
    print(
        f"  a 24 h study (~{day:.0f} trials) replays in ~{day / statistics.median(mem_rates):.1f} s "
        f"in memory, ~{day / statistics.median(sql_rates):.0f} s on SQLite"
    )


if __name__ == "__main__":
    main()
