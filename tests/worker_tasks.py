"""Fast tasks for the worker and fault tests, loaded by `centaur worker` as ``fn:tests/worker_tasks.py:NAME``.

Each evaluation sleeps a little so that several workers overlap and a SIGKILL lands inside a
trial, and appends ``start``/``end`` lines (trial number, pid, value) to the file named by
``CENTAUR_TEST_LEDGER``: the tests read it to prove that no trial number was evaluated twice and
that every recorded value is what the objective returned. The value is a pure function of the
configuration, so a test can recompute it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Param, SearchSpace

CENTER = {"x": 0.3, "y": -0.2, "z": 0.6}


def quad_value(config: dict[str, Any]) -> float:
    """A shifted quadratic in three floats plus an integer and a choice (minimum 0)."""
    v = sum((float(config[k]) - c) ** 2 for k, c in CENTER.items())
    v += 0.01 * (int(config["n"]) - 3) ** 2
    v += {"a": 0.0, "b": 0.05, "c": 0.1}[config["kind"]]
    return v


def _ledger(line: str) -> None:
    path = os.environ.get("CENTAUR_TEST_LEDGER")
    if path:
        with open(path, "a") as f:  # short appends (< PIPE_BUF) from many processes stay whole
            f.write(line + "\n")


def quad(seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    space = SearchSpace(
        params={
            "x": Param("x", "float", -1.0, 1.0, default=0.0),
            "y": Param("y", "float", -1.0, 1.0, default=0.0),
            "z": Param("z", "float", -1.0, 1.0, default=0.0),
            "n": Param("n", "int", 1, 8, default=1),
            "kind": Param("kind", "categorical", choices=("a", "b", "c"), default="c"),
        },
        metric="loss",
        direction="minimize",
    )
    sleep = float(os.environ.get("CENTAUR_TEST_SLEEP", "0.02"))

    def fn(config: dict[str, Any], number: int) -> SimOutcome:
        _ledger(f"start {number} {os.getpid()}")
        time.sleep(sleep)
        value = quad_value(config)
        _ledger(f"end {number} {os.getpid()} {value!r}")
        return SimOutcome("ok", value, 1.0)

    return space, fn, {"objective": "shifted quadratic", "optimum": 0.0}
