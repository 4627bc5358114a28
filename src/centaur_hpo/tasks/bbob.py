"""COCO BBOB functions as tasks: ``bbob:f<function>:d<dimension>:i<instance>``.

The function is evaluated by COCO's own implementation (``coco-experiment``, imported as
``cocoex``); its optimum comes from IOHprofiler's independent implementation of the same suite
(``ioh``), so regret = f(x) - f_opt is computed against a value no one here wrote. The two
libraries generate the same instances; :func:`make_task` checks that they agree at the optimum
before a study starts, so a version mismatch fails loudly instead of producing wrong regrets.

Every parameter ``x0 .. x{d-1}`` is a float in BBOB's domain [-5, 5] with default 0 (the centre,
where COCO suggests starting). One evaluation is charged :data:`SECONDS_PER_EVALUATION` simulated
seconds, so a time budget of N seconds is N function evaluations.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Config, Param, SearchSpace

SECONDS_PER_EVALUATION = 1.0
FUNCTIONS = range(1, 25)
DIMENSIONS = (2, 3, 5, 10, 20, 40)
_SPEC = re.compile(r"^bbob:f(\d+):d(\d+):i(\d+)$")
_LOCK = threading.Lock()  # COCO's C core is not documented as thread-safe


def parse_spec(spec: str) -> tuple[int, int, int]:
    """``bbob:f3:d5:i2`` -> (3, 5, 2); anything else gets an error that shows the form."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise ValueError(
            f"task {spec!r}: write bbob:f<function>:d<dimension>:i<instance>, e.g. bbob:f1:d5:i1"
        )
    f, d, i = (int(g) for g in m.groups())
    if f not in FUNCTIONS:
        raise ValueError(f"task {spec!r}: BBOB has functions f1..f24, not f{f}")
    if d not in DIMENSIONS:
        raise ValueError(f"task {spec!r}: BBOB dimensions are {list(DIMENSIONS)}, not {d}")
    if not 1 <= i <= 15:
        raise ValueError(f"task {spec!r}: use instances 1..15 (COCO's standard ones)")
    return f, d, i


def _imports() -> tuple[Any, Any]:
    try:
        import cocoex
        import ioh
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ValueError(
            "BBOB tasks need the packages coco-experiment and ioh: pip install coco-experiment ioh"
        ) from e
    return cocoex, ioh


def optimum(f: int, d: int, i: int) -> tuple[float, list[float]]:
    """(f_opt, x_opt) of a BBOB instance, from ``ioh``."""
    _, ioh = _imports()
    problem = ioh.get_problem(f, instance=i, dimension=d, problem_class=ioh.ProblemClass.BBOB)
    return float(problem.optimum.y), [float(v) for v in problem.optimum.x]


def space(d: int) -> SearchSpace:
    params = {f"x{k}": Param(f"x{k}", "float", low=-5.0, high=5.0, default=0.0) for k in range(d)}
    return SearchSpace(params=params, metric="f", direction="minimize")


def make_task(spec: str, seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    """The BBOB instance named by ``spec``; deterministic, so ``seed`` only names the cell."""
    f, d, i = parse_spec(spec)
    cocoex, _ = _imports()
    suite = cocoex.Suite("bbob", "", f"function_indices:{f} dimensions:{d} instance_indices:{i}")
    problem = suite.get_problem_by_function_dimension_instance(f, d, i)
    f_opt, x_opt = optimum(f, d, i)
    with _LOCK:
        at_opt = float(problem(x_opt))
    if abs(at_opt - f_opt) > 1e-6 * max(1.0, abs(f_opt)):
        raise ValueError(
            f"task {spec!r}: COCO gives f(x_opt) = {at_opt} but ioh's optimum is {f_opt}; the "
            "installed coco-experiment and ioh disagree on this instance"
        )
    sp = space(d)
    names = sp.names

    def fn(config: Config, number: int) -> SimOutcome:
        x = [float(config[n]) for n in names]
        assert suite is not None  # the suite owns the problem; keep it alive with the closure
        with _LOCK:
            value = float(problem(x))
        return SimOutcome(
            "ok", value, SECONDS_PER_EVALUATION, {"f": value, "regret": value - f_opt}
        )

    info = {
        "description": f"COCO BBOB f{f} ({problem.name}), {d}-D, instance {i}; "
        "evaluated by coco-experiment, optimum from ioh",
        "optimum": f_opt,
        "x_optimum": x_opt,
        "suite": "bbob",
        "function": f,
        "dimension": d,
        "instance": i,
        "seconds_per_evaluation": SECONDS_PER_EVALUATION,
    }
    return sp, fn, info
