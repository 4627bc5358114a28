"""Which failure policy should be the default? Measured, not assumed.

A failed trial (out of memory, diverged, timeout) can be told to the optimizer in three ways:
``penalty`` (a completed trial at the space's failure value, the paper's 100.0), ``constraint``
(the same value plus an infeasibility mark that TPE and GP-BO model) or ``ignore`` (a FAIL the
sampler skips). This runs each policy with TPE, CMA-ES and random search on the synthetic
autoresearch landscape (the paper's 14-HP space, out-of-memory boundary and divergence included)
for the paper's 24 h training-time budget, over several seeds, and prints the best val_bpb
(mean ± std over seeds) and the failed-trial share.

    python benchmarks/failure_policy.py --seeds 5 --methods tpe,cmaes,random
"""

from __future__ import annotations

import argparse
import statistics
import time

import optuna

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.records import best_trial, outcome_counts
from centaur_hpo.study import Budget, StudyRunner
from centaur_hpo.tasks.autoresearch_sim import make_task

POLICIES = ("penalty", "constraint", "ignore")


def run(method: str, policy: str, seed: int, hours: float) -> tuple[float, float]:
    space, fn, _ = make_task(seed)
    study = optuna.create_study(
        sampler=make_sampler(method, space, seed, failure_policy=policy),
        direction=space.direction,
    )
    StudyRunner(
        study,
        FunctionEvaluator(space, fn),
        budget=Budget(seconds=hours * 3600),
        failure_policy=policy,  # type: ignore[arg-type]
        progress=lambda s: None,
    ).run()
    best = best_trial(study, space.direction)
    counts = outcome_counts(study.get_trials(deepcopy=False))
    ran = sum(v for k, v in counts.items() if k not in ("interrupted", "not_run"))
    failed = sum(v for k, v in counts.items() if k not in ("ok", "interrupted", "not_run"))
    return (best.user_attrs["value"] if best else float("nan")), failed / max(ran, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default="tpe,cmaes,random")
    ap.add_argument("--hours", type=float, default=24.0)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"autoresearch-sim, {args.hours:g} h training-time budget, seeds 0-{args.seeds - 1}\n")
    print("| method | policy | best val_bpb (mean ± std) | failed trials | wall s |")
    print("|---|---|---|---|---|")
    for method in args.methods.split(","):
        for policy in POLICIES:
            t0 = time.perf_counter()
            results = [run(method, policy, s, args.hours) for s in range(args.seeds)]
            bests = [b for b, _ in results]
            fails = [f for _, f in results]
            sd = statistics.stdev(bests) if len(bests) > 1 else 0.0
            print(
                f"| {method} | {policy} | {statistics.mean(bests):.4f} ± {sd:.4f} | "
                f"{100 * statistics.mean(fails):.0f}% | {time.perf_counter() - t0:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
