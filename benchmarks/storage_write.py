"""What one trial's writes cost in the storage: SQLite against PostgreSQL, per attribute or batched.

A trial writes: ask (create the trial, one row per parameter), about fifteen user attributes
(outcome, value, metrics, the time split, ...) and tell. The ``per-attr`` variant writes each
attribute through Optuna's public API (one transaction each); ``batched`` writes them with
``centaur_hpo.storage.set_trial_attrs`` in one transaction, as the study loop does; ``+lock``
adds the study lock that every proposal takes with several workers. No objective runs: this is
the storage's share of a trial's overhead.

PostgreSQL: pass ``--postgres URL``, or run from the repository root to start a throwaway server
with the test helper (``tests/pg_server.py``; needs initdb/pg_ctl, see scripts/install-postgres.sh).

    python benchmarks/storage_write.py --trials 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.storage import open_storage, set_trial_attrs, study_lock

DISTRIBUTIONS = {
    "lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True),
    "depth": optuna.distributions.IntDistribution(1, 12),
    "width": optuna.distributions.IntDistribution(64, 1024),
    "wd": optuna.distributions.FloatDistribution(0.0, 0.3),
    "act": optuna.distributions.CategoricalDistribution(("relu", "gelu", "tanh")),
}


def trial_attrs(i: int) -> dict[str, Any]:
    """The user attributes the study loop records for a finished trial (same keys and sizes)."""
    return {
        "outcome": "ok",
        "value": 1.0 / (i + 1),
        "metrics": {"val_bpb": 1.0 / (i + 1), "train_loss": 2.5, "peak_vram_mb": 1234.5},
        "error": None,
        "exit_code": 0,
        "time_wall": 301.2,
        "time_startup": 3.1,
        "time_training": 290.0,
        "time_eval": 8.1,
        "time_charged": 301.2,
        "time_optimizer": 0.02,
        "logs": f"runs/study/trials/{i:05d}",
        "slot": None,
        "finished_at": "2026-01-01T00:00:00+00:00",
        "source": "TPESampler",
    }


def one_variant(url: str, variant: str, n: int) -> float:
    """Mean seconds per trial for ``variant`` over ``n`` trials in a fresh study."""
    storage = open_storage(url)
    study = optuna.create_study(
        storage=storage,
        study_name=f"{variant}-{time.monotonic_ns()}",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    t0 = time.perf_counter()
    for i in range(n):
        if variant.endswith("+lock"):
            with study_lock(study._storage, study._study_id):
                trial = study.ask(DISTRIBUTIONS)
        else:
            trial = study.ask(DISTRIBUTIONS)
        attrs = trial_attrs(i)
        if variant.startswith("per-attr"):
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        else:
            set_trial_attrs(study._storage, trial._trial_id, user=attrs)
        study.tell(trial, attrs["value"])
    return (time.perf_counter() - t0) / n


def start_postgres() -> tuple[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pg_server import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL binaries; pass --postgres URL or run install-postgres.sh")
    server = PgServer(bindir).init()
    server.start()
    return server.new_database("bench"), server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200, help="trials per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    ap.add_argument("--postgres", help="PostgreSQL URL (default: start a throwaway server)")
    ap.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    variants = ("per-attr", "batched", "batched+lock")
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        if args.postgres:
            urls["postgresql"] = args.postgres
        elif not args.no_postgres:
            urls["postgresql"], server = start_postgres()
        try:
            results: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for db, url in urls.items():
                    for v in variants:
                        results.setdefault((db, v), []).append(one_variant(url, v, args.trials))
        finally:
            if server is not None:
                server.close()
    print(
        f"storage writes per trial (ask + {len(trial_attrs(0))} user attrs + tell), "
        f"{args.trials} trials x {args.rounds} rounds, median ms per trial"
    )
    print(f"{'storage':<12}" + "".join(f"{v:>16}" for v in variants))
    for db in urls:
        cells = [statistics.median(results[(db, v)]) * 1000 for v in variants]
        print(f"{db:<12}" + "".join(f"{c:>16.2f}" for c in cells))


if __name__ == "__main__":
    main()
