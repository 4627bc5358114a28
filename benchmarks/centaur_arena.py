"""Centaur against CMA-ES, TPE and Centaur with a random proposer, on simulated tasks.

Every (task, method, seed) cell is one study of ``--trials`` trials run by the real study loop
(:class:`~centaur_hpo.study.StudyRunner` with a :class:`~centaur_hpo.evaluate.FunctionEvaluator`),
trial 0 being the task's default configuration, failures told with the task's penalty. Cells
are appended to ``cells.jsonl`` as they finish, so an interrupted run continues where it stopped
(``--report-only`` rebuilds the table and the curves from what is there).

Methods:

* ``centaur``: :class:`~centaur_hpo.methods.centaur.CentaurSampler`, the embedded LLM (or
  ``--llm``), share ``--ratio`` after ``--warmup`` trials;
* ``centaur-random``: the same slots filled by a uniform random configuration (the ablation
  that separates the LLM's contribution from the disturbance of CMA-ES);
* ``centaur-adaptive``, ``centaur-feasibility`` (and ``centaur-random-adaptive``,
  ``centaur-random-feasibility``, which need no LLM): the options beyond the paper;
* ``cmaes``, ``tpe``, ``random``: the classical samplers of :func:`centaur_hpo.methods.make_sampler`.

Example (the numbers in docs/centaur.md)::

    nice -n 15 python benchmarks/centaur_arena.py --tasks autoresearch-sim,bbob:f10:d5:i1 \\
        --seeds 5 --trials 30 --out benchmarks/results/centaur_arena
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.llm import llm_usage, make_client
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import OUTCOME_KEY, SOURCE_KEY
from centaur_hpo.methods.centaur import CentaurSampler
from centaur_hpo.study import Budget, StudyRunner, StudyStopped
from centaur_hpo.tasks.simulated import get_simulated_task

DEFAULT_METHODS = ("centaur", "cmaes", "tpe", "centaur-random")
COLOURS = {
    "centaur": "#d62728",
    "centaur-random": "#9467bd",
    "centaur-adaptive": "#e377c2",
    "centaur-feasibility": "#8c564b",
    "centaur-random-adaptive": "#bcbd22",
    "centaur-random-feasibility": "#17becf",
    "cmaes": "#1f77b4",
    "tpe": "#2ca02c",
    "random": "#7f7f7f",
}


def build_sampler(method: str, space: Any, seed: int, args: argparse.Namespace) -> Any:
    """``centaur[-random][-adaptive][-feasibility]`` or a classical method's name."""
    parts = method.split("-")
    if parts[0] != "centaur":
        return make_sampler(method, space, seed)
    unknown = set(parts[1:]) - {"random", "adaptive", "feasibility"}
    if unknown:
        raise SystemExit(f"unknown Centaur variant {method!r}: {sorted(unknown)}")
    options: dict[str, Any] = {
        "seed": seed,
        "ratio": args.ratio,
        "warmup": args.warmup,
        "top_k": args.top_k,
        "recent": args.recent,
        "adaptive": "adaptive" in parts,
        "feasibility": "feasibility" in parts,
    }
    if "random" in parts:
        return CentaurSampler(space, proposer="random", **options)
    client = make_client(args.llm, **({"timeout_s": args.llm_timeout} if args.llm_timeout else {}))
    return CentaurSampler(space, llm=client, fallback=args.fallback, **options)


def run_cell(task: str, method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    space, fn, info = get_simulated_task(task, seed=seed)
    sampler = build_sampler(method, space, seed, args)
    study = optuna.create_study(sampler=sampler, direction=space.direction)
    t0 = time.monotonic()
    stopped = None
    try:
        StudyRunner(
            study, FunctionEvaluator(space, fn, name=task), budget=Budget(n_trials=args.trials)
        ).run()
    except StudyStopped as e:  # an LLM that failed for good: keep what ran, say why
        stopped = str(e)
    wall = time.monotonic() - t0
    trials = []
    for t in study.trials:
        outcome = t.user_attrs.get(OUTCOME_KEY)
        if outcome in (None, "interrupted", "not_run"):
            continue
        trials.append(
            {
                "number": t.number,
                "outcome": outcome,
                "value": t.user_attrs.get("value"),
                "source": t.system_attrs.get(SOURCE_KEY) or t.user_attrs.get("source"),
            }
        )
    usage = llm_usage(study)
    cell = {
        "task": task,
        "method": method,
        "seed": seed,
        "direction": space.direction,
        "optimum": info.get("optimum"),
        "trials": trials,
        "wall_s": round(wall, 2),
        "llm_calls": usage["calls"],
        "llm_failed_calls": usage["failed_calls"],
        "llm_latency_s": usage["latency_s"],
        "llm_by_status": usage["by_status"],
        "stopped": stopped,
    }
    if isinstance(sampler, CentaurSampler):
        cell["share"] = sampler.share_report()
        if sampler.proposer == "llm":
            cell["llm"] = sampler.llm.describe()
    return cell


# -- analysis ----------------------------------------------------------------------------------
def best_curve(cell: dict[str, Any]) -> list[float]:
    """Best value so far after each trial (failed trials keep the previous best)."""
    sign = 1.0 if cell["direction"] == "minimize" else -1.0
    best, out = math.inf, []
    for t in cell["trials"]:
        if t["outcome"] == "ok" and t["value"] is not None:
            best = min(best, sign * t["value"])
        out.append(sign * best)
    return out


def summarize(cells: list[dict[str, Any]], warmup: int) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["task"], c["method"]), []).append(c)
    out = {}
    for key, cs in groups.items():
        cs.sort(key=lambda c: c["seed"])
        bests = [best_curve(c)[-1] for c in cs]
        n_trials = sum(len(c["trials"]) for c in cs)
        fails = sum(t["outcome"] != "ok" for c in cs for t in c["trials"])
        post = [t for c in cs for t in c["trials"][warmup:]]
        alt = sum(t["source"] in ("llm", "random") for t in post)
        latency = sum(c["llm_latency_s"] for c in cs)
        calls = sum(c["llm_calls"] for c in cs)
        out[key] = {
            "seeds": [c["seed"] for c in cs],
            "bests": bests,
            "mean": statistics.fmean(bests),
            "std": statistics.stdev(bests) if len(bests) > 1 else 0.0,
            "fail_share": fails / n_trials if n_trials else 0.0,
            "alt_share": alt / len(post) if post and key[1].startswith("centaur") else None,
            "llm_calls": calls,
            "llm_s_per_call": latency / calls if calls else None,
            "curves": [best_curve(c) for c in cs],
            "direction": cs[0]["direction"],
            "stopped": sum(1 for c in cs if c.get("stopped")),
        }
    return out


def fmt(x: float) -> str:
    return f"{x:.5g}" if abs(x) < 1e4 else f"{x:.4e}"


def table(
    summary: dict[tuple[str, str], dict[str, Any]], methods: list[str], reference: str = "centaur"
) -> str:
    lines = []
    for task in sorted({k[0] for k in summary}):
        ref = summary.get((task, reference))
        lines += [
            f"### {task}",
            "",
            "| method | best (mean ± std) | seeds | failed trials | alternative share "
            f"| LLM calls (s/call) | {reference} better in |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in methods:
            s = summary.get((task, m))
            if s is None:
                continue
            share = "-" if s["alt_share"] is None else f"{100 * s['alt_share']:.0f}%"
            calls = "-" if not s["llm_calls"] else f"{s['llm_calls']} ({s['llm_s_per_call']:.1f})"
            wins = "-"
            if ref is not None and m != reference:
                paired = [
                    (a, b)
                    for sa, a in zip(ref["seeds"], ref["bests"], strict=True)
                    for sb, b in zip(s["seeds"], s["bests"], strict=True)
                    if sa == sb
                ]
                sign = 1.0 if s["direction"] == "minimize" else -1.0
                better = sum(sign * a < sign * b for a, b in paired)
                ties = sum(a == b for a, b in paired)
                wins = f"{better}/{len(paired)} seeds" + (f" ({ties} tied)" if ties else "")
            lines.append(
                f"| {m} | {fmt(s['mean'])} ± {fmt(s['std'])} | {len(s['bests'])}"
                + (f" ({s['stopped']} stopped early)" if s["stopped"] else "")
                + " | "
                f"{100 * s['fail_share']:.0f}% | {share} | {calls} | {wins} |"
            )
        lines.append("")
    return "\n".join(lines)


def svg_curves(summary: dict[tuple[str, str], dict[str, Any]], methods: list[str]) -> str:
    """Mean best-so-far against trial number, one panel per task (hand-written SVG)."""
    tasks = sorted({k[0] for k in summary})
    pw, ph, pad = 460, 300, 55
    width, height = pw * len(tasks), ph + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, task in enumerate(tasks):
        x0 = i * pw
        series = {}
        for m in methods:
            s = summary.get((task, m))
            if s is None:
                continue
            n = min(len(c) for c in s["curves"])
            mean = [
                statistics.fmean(c[k] for c in s["curves"] if math.isfinite(c[k]))
                if any(math.isfinite(c[k]) for c in s["curves"])
                else math.nan
                for k in range(n)
            ]
            series[m] = mean
        values = [v for ys in series.values() for v in ys if math.isfinite(v)]
        if not values:
            continue
        lo, hi = min(values), max(values)
        # Skip the first trials' extreme values so the interesting part is readable.
        late = [v for ys in series.values() for v in ys[len(ys) // 5 :] if math.isfinite(v)]
        hi = max(late) if late else hi
        span = (hi - lo) or 1.0
        n_max = max(len(ys) for ys in series.values())

        def px(k: int, x0: int = x0, n_max: int = n_max) -> float:
            return x0 + pad + (pw - pad - 15) * k / max(1, n_max - 1)

        def py(v: float, lo: float = lo, span: float = span) -> float:
            v = min(v, lo + span * 1.05)
            return 25 + (ph - 50) * (1 - (v - lo) / (span * 1.05))

        out.append(f'<text x="{x0 + pw / 2}" y="15" text-anchor="middle">{task}</text>')
        out.append(
            f'<line x1="{x0 + pad}" y1="{ph - 25}" x2="{x0 + pw - 15}" y2="{ph - 25}" stroke="black"/>'
        )
        out.append(f'<line x1="{x0 + pad}" y1="25" x2="{x0 + pad}" y2="{ph - 25}" stroke="black"/>')
        for frac in (0, 0.5, 1):
            v = lo + span * frac
            out.append(
                f'<text x="{x0 + pad - 4}" y="{py(v) + 4:.1f}" text-anchor="end">{fmt(v)}</text>'
            )
        for k in (0, n_max // 2, n_max - 1):
            out.append(f'<text x="{px(k):.1f}" y="{ph - 10}" text-anchor="middle">{k + 1}</text>')
        out.append(
            f'<text x="{x0 + pw / 2}" y="{ph + 2}" text-anchor="middle">trial (mean best so far '
            "over seeds)</text>"
        )
        for m, ys in series.items():
            pts = " ".join(f"{px(k):.1f},{py(v):.1f}" for k, v in enumerate(ys) if math.isfinite(v))
            out.append(
                f'<polyline fill="none" stroke="{COLOURS.get(m, "black")}" stroke-width="1.8" '
                f'points="{pts}"/>'
            )
    for j, m in enumerate(methods):
        x = 10 + j * 150
        out.append(
            f'<rect x="{x}" y="{height - 22}" width="12" height="12" fill="{COLOURS.get(m, "black")}"/>'
        )
        out.append(f'<text x="{x + 16}" y="{height - 12}">{m}</text>')
    out.append("</svg>")
    return "\n".join(out)


# -- main --------------------------------------------------------------------------------------
def seeds_of(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    if "," in text:
        return [int(s) for s in text.split(",")]
    return list(range(int(text)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="autoresearch-sim,bbob:f10:d5:i1")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    ap.add_argument("--seeds", default="5", help="a count (5), a range (0-4) or a list (0,3,7)")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--top-k", type=int, default=5, help="best trials shown to the LLM")
    ap.add_argument("--recent", type=int, default=20, help="recent trials shown to the LLM")
    ap.add_argument(
        "--llm-timeout",
        type=float,
        default=None,
        help="seconds before one LLM request is abandoned and retried (the provider's default)",
    )
    ap.add_argument(
        "--fallback",
        action="store_true",
        help="run CMA-ES's candidate when the LLM fails for good (source cmaes-fallback)",
    )
    ap.add_argument("--llm", default=None, help="LLM spec (default: the embedded SmolLM2-135M)")
    ap.add_argument("--out", default="benchmarks/results/centaur_arena")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--reference", default="centaur", help="method the others are paired with")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells_path = out / "cells.jsonl"
    tasks = [t for t in args.tasks.split(",") if t]
    methods = [m for m in args.methods.split(",") if m]
    cells = (
        [json.loads(line) for line in cells_path.read_text().splitlines() if line.strip()]
        if cells_path.exists()
        else []
    )
    done = {(c["task"], c["method"], c["seed"]) for c in cells}
    if not args.report_only:
        # Seeds outermost: if time runs out, every method has the same seeds so far.
        for seed in seeds_of(args.seeds):
            for task in tasks:
                for method in methods:
                    if (task, method, seed) in done:
                        continue
                    cell = run_cell(task, method, seed, args)
                    done.add((task, method, seed))
                    cells.append(cell)
                    with cells_path.open("a") as f:
                        f.write(json.dumps(cell) + "\n")
                    best = best_curve(cell)[-1]
                    print(
                        f"{task} {method} seed {seed}: best {fmt(best)}, "
                        f"{cell['llm_calls']} LLM calls, {cell['wall_s']:.0f}s",
                        flush=True,
                    )
    cells = [c for c in cells if c["task"] in tasks and c["method"] in methods]
    summary = summarize(cells, args.warmup)
    text = table(summary, methods, args.reference)
    (out / "table.md").write_text(text)
    (out / "curves.svg").write_text(svg_curves(summary, methods))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
