"""Read a grid's cells back from the storage and compute what the report shows.

Every number comes from the trial records in Optuna's storage. One cell is one (task, method,
seed); curves are computed per seed and only then summarised (mean and a band over seeds at
common budget points), so seeds are never pooled into one curve.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from centaur_hpo.bench import stats
from centaur_hpo.bench.grid import CELL_KEY, DONE_KEY
from centaur_hpo.llm.records import CALL_KEY
from centaur_hpo.records import STUDY_INFO_KEY, is_finite, trial_row

SKIP_OUTCOMES = ("interrupted", "not_run")


@dataclass
class Cell:
    """One study of the grid, reduced to what analysis needs."""

    name: str
    task: str
    method: str
    seed: int
    direction: str
    failure_value: float | None
    optimum: float | None
    budget_seconds: float | None
    n_trials_cap: int | None
    done: bool
    stopped: str | None
    trials: list[dict[str, Any]]  # ran trials in number order (records.trial_row + extras)
    space: dict[str, Any]
    llm_calls: int = 0
    llm_tokens_in: int = 0
    llm_tokens_out: int = 0
    llm_seconds: float = 0.0
    llm_by_trial: dict[int, float] = field(default_factory=dict)

    # -- per-cell numbers --------------------------------------------------------------------
    def ok_values(self) -> list[float]:
        return [t["value"] for t in self.trials if t["outcome"] == "ok" and is_finite(t["value"])]

    def best(self) -> float | None:
        vals = self.ok_values()
        if not vals:
            return None
        return min(vals) if self.direction == "minimize" else max(vals)

    def best_or_failure(self) -> float | None:
        """The best value, or the failure value when no trial succeeded (for paired tests)."""
        b = self.best()
        return b if b is not None else self.failure_value

    def regret(self) -> float | None:
        b = self.best()
        if b is None or self.optimum is None:
            return None
        return b - self.optimum if self.direction == "minimize" else self.optimum - b

    def trace(self, clock: str = "training") -> tuple[np.ndarray, np.ndarray]:
        """Best-so-far after each ran trial: (x, best) with x = cumulative time or trial number.

        ``clock``: ``training`` (the trials' training time: the paper's budget clock),
        ``total`` (training plus the optimizer's and the LLM's time) or ``trial``.
        Before the first success the best is NaN.
        """
        xs, ys = [], []
        used, best = 0.0, math.nan
        for i, t in enumerate(self.trials):
            train = _num(t.get("time_training"))
            if train is None:
                train = _num(t.get("time_wall")) or 0.0
            if clock == "training":
                used += train
            elif clock == "total":
                used += (_num(t.get("time_wall")) or train) + (_num(t.get("time_optimizer")) or 0.0)
                used += self.llm_by_trial.get(t["number"], 0.0)
            v = t["value"] if t["outcome"] == "ok" and is_finite(t["value"]) else None
            if v is not None and (math.isnan(best) or _better(v, best, self.direction)):
                best = v
            xs.append(float(i + 1) if clock == "trial" else used)
            ys.append(best)
        return np.asarray(xs, float), np.asarray(ys, float)

    def incumbents(self) -> list[dict[str, Any]]:
        """Each trial that improved the best so far: number, training time, value, params."""
        out, best, used = [], math.nan, 0.0
        for t in self.trials:
            used += _num(t.get("time_training")) or _num(t.get("time_wall")) or 0.0
            v = t["value"] if t["outcome"] == "ok" and is_finite(t["value"]) else None
            if v is not None and (math.isnan(best) or _better(v, best, self.direction)):
                best = v
                params = {k[6:]: val for k, val in t.items() if k.startswith("param:")}
                out.append(
                    {
                        "number": t["number"],
                        "time": used,
                        "value": v,
                        "params": params,
                        "source": t.get("source"),
                    }
                )
        return out

    def diversity(self) -> float | None:
        """Mean pairwise distance of the tried configurations in the unit cube (per dimension).

        Numeric parameters map to [0, 1] (log-warped where the space says log); a categorical
        one contributes 0 or 1. Divided by sqrt(dimensions) so spaces of any size compare.
        """
        points = [_encode(self.space, t) for t in self.trials]
        points = [p for p in points if p is not None]
        if len(points) < 2 or not self.space:
            return None
        x = np.asarray(points, float)
        d = x[:, None, :] - x[None, :, :]
        dist = np.sqrt((d**2).sum(-1))
        n = len(x)
        return float(dist.sum() / (n * (n - 1)) / math.sqrt(x.shape[1]))

    def unique_configs(self) -> int:
        return len(
            {
                json.dumps(
                    {k: v for k, v in t.items() if k.startswith("param:")},
                    sort_keys=True,
                    default=str,
                )
                for t in self.trials
            }
        )


def _encode(space: dict[str, Any], row: dict[str, Any]) -> list[float] | None:
    out = []
    for name, p in space.items():
        v = row.get(f"param:{name}")
        if v is None:
            return None
        if p.get("type") in ("int", "float"):
            lo, hi = float(p["low"]), float(p["high"])
            if p.get("log"):
                u = (math.log(max(float(v), 1e-300)) - math.log(lo)) / (math.log(hi) - math.log(lo))
            else:
                u = (float(v) - lo) / (hi - lo)
            out.append(min(max(u, 0.0), 1.0))
        else:
            choices = list(p.get("choices") or [False, True])
            # one coordinate per choice, scaled so two different choices are 1 apart
            out.extend(math.sqrt(0.5) * float(v == c) for c in choices)
    return out


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def _num(x: Any) -> float | None:
    return float(x) if is_finite(x) else None


# -- loading -------------------------------------------------------------------------------------
def load_cells(storage: Any) -> list[Cell]:
    """Every benchmark cell in ``storage`` (studies without a cell identity are left out)."""
    from centaur_hpo.storage import open_storage

    if isinstance(storage, str):
        storage = open_storage(storage)
    cells = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        sid = storage.get_study_id_from_name(summary.study_name)
        attrs = storage.get_study_system_attrs(sid)
        if CELL_KEY not in attrs:
            continue
        cells.append(_cell(storage, sid, summary.study_name, attrs))
    cells.sort(key=lambda c: (c.task, c.method, c.seed))
    return cells


def _cell(storage: Any, sid: int, name: str, attrs: dict[str, Any]) -> Cell:
    ident = json.loads(attrs[CELL_KEY])
    info = json.loads(attrs.get(STUDY_INFO_KEY, "{}"))
    done = json.loads(attrs[DONE_KEY]) if DONE_KEY in attrs else None
    task_info = info.get("task_info") or {}
    optimum = task_info.get("optimum")
    rows = []
    for t in storage.get_all_trials(sid, deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.FAIL):
            continue
        row = trial_row(t)
        if row["outcome"] in SKIP_OUTCOMES:
            continue
        rows.append(row)
    rows.sort(key=lambda r: r["number"])
    cell = Cell(
        name=name,
        task=ident["task"],
        method=ident["method"],
        seed=int(ident["seed"]),
        direction=info.get("direction", "minimize"),
        failure_value=info.get("failure_value"),
        optimum=float(optimum) if is_finite(optimum) else None,
        budget_seconds=ident.get("budget_seconds"),
        n_trials_cap=ident.get("n_trials"),
        done=done is not None,
        stopped=(done or {}).get("stopped"),
        trials=rows,
        space=info.get("space") or {},
    )
    for key, text in attrs.items():
        if not key.startswith(CALL_KEY):
            continue
        rec = json.loads(text) if isinstance(text, str) else text
        cell.llm_calls += 1
        cell.llm_tokens_in += int(rec.get("tokens_in") or 0)
        cell.llm_tokens_out += int(rec.get("tokens_out") or 0)
        lat = _num(rec.get("latency_s")) or 0.0
        cell.llm_seconds += lat
        if isinstance(rec.get("trial"), int):
            cell.llm_by_trial[rec["trial"]] = cell.llm_by_trial.get(rec["trial"], 0.0) + lat
    return cell


# -- summaries -----------------------------------------------------------------------------------
def _mean_std_median(xs: list[float]) -> tuple[float | None, float | None, float | None]:
    if not xs:
        return None, None, None
    return (
        statistics.fmean(xs),
        statistics.stdev(xs) if len(xs) > 1 else 0.0,
        statistics.median(xs),
    )


def by_task_method(cells: Iterable[Cell]) -> dict[str, dict[str, list[Cell]]]:
    out: dict[str, dict[str, list[Cell]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        out[c.task][c.method].append(c)
    return {t: dict(ms) for t, ms in out.items()}


def summary_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    """One row per task x method: best over seeds, regret, failures, trials, LLM use."""
    rows = []
    for task, methods in by_task_method(cells).items():
        for method, cs in methods.items():
            bests = [b for b in (c.best() for c in cs) if b is not None]
            regrets = [r for r in (c.regret() for c in cs) if r is not None]
            mean, std, med = _mean_std_median(bests)
            rmean, rstd, rmed = _mean_std_median(regrets)
            n_trials = [len(c.trials) for c in cs]
            outcomes: dict[str, int] = defaultdict(int)
            for c in cs:
                for t in c.trials:
                    outcomes[t["outcome"]] += 1
            total = sum(outcomes.values())
            failed = total - outcomes.get("ok", 0)
            div = [d for d in (c.diversity() for c in cs) if d is not None]
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "seeds": len(cs),
                    "seeds_with_success": len(bests),
                    "best_mean": mean,
                    "best_std": std,
                    "best_median": med,
                    "regret_mean": rmean,
                    "regret_std": rstd,
                    "regret_median": rmed,
                    "trials_mean": statistics.fmean(n_trials) if n_trials else 0,
                    "trials_total": total,
                    "failure_share": failed / total if total else None,
                    "outcomes": dict(sorted(outcomes.items())),
                    "llm_calls": sum(c.llm_calls for c in cs),
                    "llm_tokens": sum(c.llm_tokens_in + c.llm_tokens_out for c in cs),
                    "llm_seconds": sum(c.llm_seconds for c in cs),
                    "diversity": statistics.fmean(div) if div else None,
                    "unfinished": sum(1 for c in cs if not c.done),
                    "stopped": sum(1 for c in cs if c.stopped),
                }
            )
    return rows


def per_seed_rows(cells: list[Cell]) -> list[dict[str, Any]]:
    return [
        {
            "task": c.task,
            "method": c.method,
            "seed": c.seed,
            "best": c.best(),
            "regret": c.regret(),
            "trials": len(c.trials),
            "failures": sum(1 for t in c.trials if t["outcome"] != "ok"),
            "llm_calls": c.llm_calls,
            "done": c.done,
            "stopped": c.stopped,
            "study": c.name,
        }
        for c in cells
    ]


@dataclass
class Band:
    """Mean best-so-far over seeds with a band, at common x points, plus each seed's curve."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    seeds: list[tuple[int, np.ndarray, np.ndarray]]


def band(cells: list[Cell], clock: str, points: int = 120) -> Band | None:
    """Each seed's step curve read at common x points; mean and mean +/- std where every seed
    already has a successful trial (a seed with none yet would make the mean meaningless)."""
    traces = [(c.seed, *c.trace(clock)) for c in cells if c.trials]
    if not traces:
        return None
    xmax = max(float(x[-1]) for _, x, _ in traces if len(x))
    xmin = min(float(x[0]) for _, x, _ in traces if len(x))
    if xmax <= 0:
        return None
    grid = np.linspace(max(xmin, 0.0), xmax, points)
    sampled = []
    for _, x, y in traces:
        idx = np.searchsorted(x, grid, side="right") - 1
        vals = np.where(idx >= 0, y[np.clip(idx, 0, len(y) - 1)], np.nan)
        # after a seed's last trial its best stays: it ran out of budget there
        sampled.append(vals)
    s = np.vstack(sampled)
    complete = ~np.isnan(s).any(axis=0)
    mean = np.full(len(grid), np.nan)
    std = np.full(len(grid), np.nan)
    if complete.any():
        mean[complete] = s[:, complete].mean(axis=0)
        std[complete] = s[:, complete].std(axis=0, ddof=1) if len(s) > 1 else 0.0
    return Band(grid, mean, mean - std, mean + std, [(sd, x, y) for sd, x, y in traces])


@dataclass
class TaskTests:
    task: str
    direction: str
    n_seeds: int
    tests: list[stats.PairTest]
    warning: str | None


def paired_tests(cells: list[Cell], alpha: float = 0.05) -> list[TaskTests]:
    """Wilcoxon signed-rank between every pair of methods per task, Holm-corrected."""
    out = []
    for task, methods in by_task_method(cells).items():
        values = {
            m: {c.seed: c.best_or_failure() for c in cs if c.best_or_failure() is not None}
            for m, cs in methods.items()
        }
        direction = next(iter(methods.values()))[0].direction
        tests = stats.pairwise_wilcoxon(values, direction)
        n = max((t.n for t in tests), default=0)
        weak = [t for t in tests if stats.min_wilcoxon_p(t.n) > alpha]
        warning = None
        if weak:
            fewest = min(t.n for t in weak)
            warning = (
                f"{len(weak)} of {len(tests)} pairs have too few paired seeds for the Wilcoxon "
                f"test to reach significance (with {fewest} seeds the smallest possible "
                f"two-sided p is {stats.min_wilcoxon_p(fewest):.3f} > {alpha}); run at least "
                f"{_seeds_needed(alpha)} seeds per method"
            )
        out.append(TaskTests(task, direction, n, tests, warning))
    return out


def _seeds_needed(alpha: float) -> int:
    n = 1
    while stats.min_wilcoxon_p(n) > alpha:
        n += 1
    return n


@dataclass
class RankResult:
    methods: list[str]
    blocks: list[str]
    avg_ranks: dict[str, float]
    cd: float
    cliques: list[list[str]]
    friedman: tuple[float, float] | None
    block_kind: str  # "task" or "seed"
    left_out: list[str] = field(default_factory=list)  # methods with too few common seeds


def average_ranks(cells: list[Cell], alpha: float = 0.05) -> RankResult | None:
    """Average ranks of the methods; blocks are tasks (mean best over seeds), or, with a single
    task, that task's seeds. Only methods present in every block are ranked."""
    grouped = by_task_method(cells)
    if not grouped:
        return None
    direction = cells[0].direction
    methods = sorted(set.intersection(*[set(ms) for ms in grouped.values()]))
    if len(grouped) == 1:
        methods = _methods_with_common_seeds(next(iter(grouped.values())), methods)
    if len(methods) < 2:
        return None
    rows, blocks = [], []
    if len(grouped) >= 2:
        kind = "task"
        for task, ms in grouped.items():
            row = []
            for m in methods:
                vals = [v for v in (c.best_or_failure() for c in ms[m]) if v is not None]
                row.append(statistics.fmean(vals) if vals else math.inf)
            rows.append(row)
            blocks.append(task)
    else:
        kind = "seed"
        task, ms = next(iter(grouped.items()))
        seeds = sorted(set.intersection(*[{c.seed for c in ms[m]} for m in methods]))
        for s in seeds:
            row = []
            for m in methods:
                c = next(c for c in ms[m] if c.seed == s)
                v = c.best_or_failure()
                row.append(v if v is not None else math.inf)
            rows.append(row)
            blocks.append(f"{task} seed {s}")
    if not rows:
        return None
    matrix = np.asarray(rows, float)
    r = stats.ranks(matrix, direction)
    avg = dict(zip(methods, r.mean(axis=0).tolist(), strict=True))
    cd = stats.nemenyi_cd(len(methods), len(rows), alpha)
    left_out = sorted(set().union(*[set(ms) for ms in grouped.values()]) - set(methods))
    return RankResult(
        methods,
        blocks,
        avg,
        cd,
        stats.cd_cliques(avg, cd),
        stats.friedman(matrix),
        kind,
        left_out,
    )


def _methods_with_common_seeds(by_method: dict[str, list[Cell]], methods: list[str]) -> list[str]:
    """Methods to rank on one task: most seeds first, adding a method only while the seeds all
    chosen methods share stay at least min(3, most seeds). A method run on fewer seeds (an
    expensive one, shortened) would otherwise cut the ranking down to one or two blocks."""
    seeds = {m: {c.seed for c in by_method[m]} for m in methods}
    order = sorted(methods, key=lambda m: (-len(seeds[m]), m))
    if not order:
        return []
    need = min(3, len(seeds[order[0]]))
    chosen, common = [order[0]], set(seeds[order[0]])
    for m in order[1:]:
        if len(common & seeds[m]) >= need:
            chosen.append(m)
            common &= seeds[m]
    return sorted(chosen)
