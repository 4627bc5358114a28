"""Optimizer latency per suggestion against the number of completed trials.

For each classical method and each history size n, a study over the paper's 14-HP autoresearch
space is filled with n completed trials (random configurations, a synthetic objective, 10% of
them failed at the penalty value), then the time of ``study.ask`` (the method's proposal,
constraint repair included) is measured over a few further ask/tell steps. The first ask after
the history is loaded is reported separately: CMA-ES and SMAC replay the history once there.

    python benchmarks/suggest_latency.py --sizes 10,100,300,1000 --methods random,tpe,cmaes,gp,smac

``gp-optuna-int`` is GP-BO with Optuna's own integer search (``-o relax_integers=false``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import create_trial

from centaur_hpo.methods import make_sampler
from centaur_hpo.script import read_knobs
from centaur_hpo.space import build_space, load_space_file
from centaur_hpo.spaces import builtin_path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "autoresearch_train.py"

# Variants measured beside the methods themselves: name -> (method, options).
VARIANTS = {"gp-optuna-int": ("gp", {"relax_integers": False})}


def objective(c: dict) -> float:
    return (
        0.98
        + 0.002 * (c["DEPTH"] - 10) ** 2 / 10
        + 0.01 * math.log(c["MATRIX_LR"] / 0.05) ** 2
        + (0.003 if c["WINDOW_PATTERN"] != "SSSL" else 0.0)
    )


def measure(method: str, n: int, steps: int, storage: str | None) -> tuple[float, float, float]:
    space = build_space(read_knobs(FIXTURE), load_space_file(builtin_path("autoresearch")))
    dists = space.distributions()
    rng = np.random.default_rng(0)
    rand = optuna.samplers.RandomSampler(seed=1)
    filler = optuna.create_study(sampler=rand)
    trials = []
    for i in range(n):
        t = filler.ask(dists)
        config = space.repair(t.params)
        failed = i % 10 == 9
        value = 100.0 if failed else objective(config) + rng.normal(0, 1e-3)
        trials.append(
            create_trial(
                params=config,
                distributions=dists,
                value=value,
                user_attrs={"outcome": "oom" if failed else "ok", "value": value},
            )
        )
    name, options = VARIANTS.get(method, (method, {}))
    study = optuna.create_study(storage=storage, sampler=make_sampler(name, space, 0, **options))
    study.add_trials(trials)
    t0 = time.perf_counter()
    trial = study.ask(dists)
    first = time.perf_counter() - t0
    study.tell(trial, objective(trial.params))
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trial = study.ask(dists)
        times.append(time.perf_counter() - t0)
        study.tell(trial, objective(trial.params))
    return first, statistics.median(times), statistics.fmean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,300,1000")
    ap.add_argument("--methods", default="random,tpe,cmaes,gp,smac")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--storage", default=None, help="e.g. sqlite:///x.db (default: in memory)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        "| method (median / mean) | "
        + " | ".join(f"n={n}" for n in sizes)
        + " | first ask at largest n |"
    )
    print("|---|" + "---|" * (len(sizes) + 1))
    for method in args.methods.split(","):
        cells, first = [], 0.0
        for n in sizes:
            try:
                first, med, mean = measure(method, n, args.steps, args.storage)
                cells.append(f"{med * 1000:.1f} / {mean * 1000:.1f} ms")
            except ImportError as e:
                cells.append(f"n/a ({e})")
                break
            print(f"{method} n={n}: {med * 1000:.1f} ms", file=sys.stderr)
        print(f"| {method} | " + " | ".join(cells) + f" | {first * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
