"""Harness overhead per trial: centaur-hpo's study loop against a bare Optuna ask/tell loop.

Both run the same trivial training script as a subprocess for N trials, in the same process and
alternating rounds, so the ratio holds on a noisy machine. The bare loop does what a minimal
hand-written script would: ask, write the config to a file, spawn, parse one line, tell. The
harness additionally makes a trial folder with an injected copy of the script, links siblings,
runs in a new process group with heartbeats, parses the summary block and records outcome,
metrics and the time split in the storage.

    python benchmarks/harness_overhead.py --trials 40 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from centaur_hpo.evaluate import ScriptEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.space import build_space
from centaur_hpo.study import Budget, StudyRunner

SCRIPT = """LR = 0.1
DEPTH = 4
print("---")
print(f"val_bpb: {(LR - 0.01) ** 2 + DEPTH * 0.001:.6f}")
"""
BARE_SCRIPT = """import json, sys
c = json.load(open(sys.argv[1]))
print("val_bpb:", (c["LR"] - 0.01) ** 2 + c["DEPTH"] * 0.001)
"""


def bare_loop(folder: Path, n: int) -> float:
    (folder / "bare.py").write_text(BARE_SCRIPT)
    study = optuna.create_study(
        storage=f"sqlite:///{folder / 'bare.db'}", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask()
        config = {
            "LR": trial.suggest_float("LR", 0.01, 1.0, log=True),
            "DEPTH": trial.suggest_int("DEPTH", 1, 16),
        }
        (folder / "c.json").write_text(json.dumps(config))
        out = subprocess.run(
            [sys.executable, "bare.py", "c.json"], cwd=folder, capture_output=True, text=True
        )
        study.tell(trial, float(out.stdout.split()[-1]))
    return (time.perf_counter() - t0) / n


def harness_loop(folder: Path, n: int) -> float:
    script = folder / "train.py"
    script.write_text(SCRIPT)
    space = build_space({"LR": 0.1, "DEPTH": 4})
    study = optuna.create_study(
        storage=f"sqlite:///{folder / 'h.db'}", sampler=make_sampler("random", space, 0)
    )
    evaluator = ScriptEvaluator(script=script, space=space, run_dir=folder / "run")
    runner = StudyRunner(study, evaluator, budget=Budget(n_trials=n), heartbeat_interval=5.0)
    t0 = time.perf_counter()
    runner.run()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bare, harness = [], []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            bare.append(bare_loop(Path(a), args.trials))
            harness.append(harness_loop(Path(b), args.trials))
        print(
            f"round {r}: bare {bare[-1] * 1000:.1f} ms/trial, harness {harness[-1] * 1000:.1f} ms/trial",
            file=sys.stderr,
        )
    b, h = statistics.median(bare), statistics.median(harness)
    print("| loop | ms per trial (median of rounds) |")
    print("|---|---|")
    print(f"| bare Optuna ask/tell + subprocess | {b * 1000:.1f} |")
    print(f"| centaur-hpo harness | {h * 1000:.1f} |")
    print(f"| ratio harness / bare | {h / b:.2f} |")
    print(
        f"| harness overhead beyond the bare loop | {(h - b) * 1000:.1f} ms "
        f"= {(h - b) / 30 * 100:.2f}% of a 30 s trial |"
    )


if __name__ == "__main__":
    main()
