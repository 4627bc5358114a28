"""Wall time of the paper's classical grid on the simulated autoresearch task.

random, tpe, cmaes, gp and smac x 8 seeds x a 24 h simulated training budget per cell (about 290
five-minute trials each), run by `centaur bench` on a local process pool into a fresh SQLite
storage. Reports the whole grid's wall time and, from the stored records, each method's mean
host seconds per cell and per trial (what the optimizer costs once training is simulated).

    python benchmarks/paper_grid.py --jobs 2
    python benchmarks/paper_grid.py --methods random,tpe --seeds 0-1 --budget 6h
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

from centaur_hpo.bench.grid import DONE_KEY
from centaur_hpo.bench.presets import PAPER_TASK
from centaur_hpo.bench.store import open_bench_storage


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="random,tpe,cmaes,gp,smac")
    ap.add_argument("--seeds", default="0-7")
    ap.add_argument("--budget", default="24h")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", help="keep the grid here (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        url = f"sqlite:///{(out / 'bench.db').resolve()}"
        cmd = [
            sys.executable,
            "-m",
            "centaur_hpo.cli",
            "bench",
            "--methods",
            args.methods,
            "--seeds",
            args.seeds,
            "--tasks",
            PAPER_TASK,
            "--budget",
            args.budget,
            "--failure-value",
            "100",
            "--storage",
            url,
            "--out",
            str(out),
            "--jobs",
            str(args.jobs),
        ]
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if res.returncode != 0:
            print(res.stdout[-4000:], res.stderr[-4000:], file=sys.stderr)
            return res.returncode
        storage = open_bench_storage(url)
        per_method: dict[str, list[tuple[float, int]]] = {}
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            sid = storage.get_study_id_from_name(s.study_name)
            done = json.loads(storage.get_study_system_attrs(sid)[DONE_KEY])
            method = s.study_name.split(":")[-2]
            per_method.setdefault(method, []).append((done["host_seconds"], done["n_trials"]))
        print(f"grid: {args.methods} x seeds {args.seeds} x {args.budget}, --jobs {args.jobs}")
        print(f"wall time of the whole grid: {wall:.1f} s ({wall / 60:.2f} min)")
        print(f"{'method':<8} {'cells':>5} {'trials/cell':>11} {'s/cell':>8} {'ms/trial':>9}")
        for m, xs in per_method.items():
            secs = statistics.fmean(x[0] for x in xs)
            trials = statistics.fmean(x[1] for x in xs)
            print(f"{m:<8} {len(xs):>5} {trials:>11.1f} {secs:>8.2f} {1000 * secs / trials:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
