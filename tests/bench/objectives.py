"""Small simulated objectives for grid tests (``fn:tests/bench/objectives.py:NAME`` tasks).

Each factory takes the cell's seed and returns (space, fn, info); ``fn(config, number)`` is
deterministic in (seed, number, config), reports 5 simulated minutes per trial, and fails in a
corner of the space so failure accounting is exercised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Param, SearchSpace

HERE = Path(__file__).resolve()


def spec(name: str) -> str:
    return f"fn:{HERE}:{name}"


def _space() -> SearchSpace:
    return SearchSpace(
        params={
            "x": Param("x", "float", -5.0, 5.0, default=3.0),
            "y": Param("y", "float", -5.0, 5.0, default=-3.0),
            "lr": Param("lr", "float", 1e-4, 1.0, log=True, default=0.1),
            "act": Param("act", "categorical", choices=("relu", "gelu", "tanh"), default="relu"),
        },
        metric="loss",
        direction="minimize",
    )


def _make(kind: str, seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    sp = _space()

    def fn(config: dict[str, Any], number: int) -> SimOutcome:
        rng = np.random.default_rng([seed, number, 7])
        x, y, lr = float(config["x"]), float(config["y"]), float(config["lr"])
        if x > 4.0:
            return SimOutcome("diverged", None, 60.0, {}, "loss is NaN")
        if y < -4.5:
            return SimOutcome("oom", None, 20.0, {}, "out of memory")
        base = x**2 + (y - 1) ** 2 if kind == "sphere" else (1 - x) ** 2 + 5 * (y - x**2) ** 2
        loss = (
            base + (np.log10(lr) + 2) ** 2 + {"relu": 0.0, "gelu": 0.1, "tanh": 0.5}[config["act"]]
        )
        return SimOutcome("ok", float(loss + rng.normal(0, 0.01)), 300.0)

    return sp, fn, {"optimum": 0.0, "description": f"test objective {kind}"}


def sphere(seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    return _make("sphere", seed)


def rosen(seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    return _make("rosen", seed)
