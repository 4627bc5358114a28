"""Evaluators: turn a configuration into a :class:`TrialResult`.

``ScriptEvaluator`` runs a real training script through :mod:`centaur_hpo.runner`;
``FunctionEvaluator`` calls a simulated task (a surrogate, a BBOB function, a benchmark table)
that reports its own simulated time. The study engine does not care which it has.
"""

from __future__ import annotations

import ast
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from centaur_hpo.runner import TrialResult, TrialSpec, python_command, run_trial
from centaur_hpo.script import find_knobs, inject, write_trial_copy
from centaur_hpo.space import Config, SearchSpace


class Evaluator(Protocol):
    space: SearchSpace

    def evaluate(self, number: int, config: Config, slot: str | None = None) -> TrialResult: ...

    def describe(self) -> dict[str, Any]: ...


def _budget_module(script: Path) -> Path | None:
    """The sibling module that defines TIME_BUDGET, when the script imports it from there.

    autoresearch keeps ``TIME_BUDGET`` in ``prepare.py`` and does ``from prepare import ...``;
    the per-trial budget reaches it through a copy of that module with the value written in.
    """
    tree = ast.parse(script.read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and any(a.name == "TIME_BUDGET" for a in node.names)
        ):
            candidate = script.with_name(node.module.replace(".", "/") + ".py")
            if candidate.is_file():
                return candidate
    return None


@dataclass
class ScriptEvaluator:
    """Run a training script, one trial directory per trial, under the runner's controls."""

    script: Path
    space: SearchSpace
    run_dir: Path
    trial_budget: float | None = None
    timeout: float | None = None
    memory_cap: int | None = None
    device: str = "cpu"
    python: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.script = Path(self.script).resolve()
        self.run_dir = Path(self.run_dir)
        knobs = find_knobs(self.script.read_text(), filename=str(self.script))
        self._budget_in_script = "TIME_BUDGET" in knobs and "TIME_BUDGET" not in self.space.params
        self._budget_module = None if "TIME_BUDGET" in knobs else _budget_module(self.script)

    def trial_timeout(self) -> float | None:
        """Hard wall-clock limit: the user's, else twice the budget plus two minutes for start-up."""
        if self.timeout is not None:
            return self.timeout
        if self.trial_budget is not None:
            return 2 * self.trial_budget + 120
        return None

    def prepare(self, number: int, config: Config) -> Path:
        trial_dir = self.run_dir / "trials" / f"{number:05d}"
        if trial_dir.exists():  # a re-run of an interrupted trial starts clean
            shutil.rmtree(trial_dir)
        values = {**self.space.fixed, **config}
        if self._budget_in_script and self.trial_budget is not None:
            values["TIME_BUDGET"] = _same_type(
                find_knobs(self.script.read_text())["TIME_BUDGET"].value, self.trial_budget
            )
        write_trial_copy(self.script, trial_dir, values, exclude=(self.run_dir,))
        if self._budget_module is not None and self.trial_budget is not None:
            module = self._budget_module
            link = trial_dir / module.name
            link.unlink()
            text = module.read_text()
            old = find_knobs(text)["TIME_BUDGET"].value
            link.write_text(inject(text, {"TIME_BUDGET": _same_type(old, self.trial_budget)}))
        return trial_dir

    def evaluate(self, number: int, config: Config, slot: str | None = None) -> TrialResult:
        trial_dir = self.prepare(number, config)
        spec = TrialSpec(
            command=python_command(self.script.name, self.python),
            trial_dir=trial_dir,
            metric=self.space.metric,
            trial_budget=self.trial_budget,
            timeout=self.trial_timeout(),
            memory_cap=self.memory_cap,
            device=self.device,
            gpu=slot if self.device == "cuda" else None,
            env=self.env,
        )
        return run_trial(spec)

    def describe(self) -> dict[str, Any]:
        return {
            "script": str(self.script),
            "trial_budget": self.trial_budget,
            "timeout": self.trial_timeout(),
            "memory_cap": self.memory_cap,
            "device": self.device,
        }


def _same_type(old: Any, new: float) -> Any:
    return int(round(new)) if isinstance(old, int) and not isinstance(old, bool) else float(new)


@dataclass
class SimOutcome:
    """What a simulated task returns for one configuration."""

    outcome: str
    value: float | None
    time: float
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class FunctionEvaluator:
    """Evaluate with a Python function ``fn(config, number) -> SimOutcome`` (simulated time)."""

    space: SearchSpace
    fn: Callable[[Config, int], SimOutcome]
    name: str = "function"
    info: Mapping[str, Any] = field(default_factory=dict)

    def evaluate(self, number: int, config: Config, slot: str | None = None) -> TrialResult:
        start = time.monotonic()
        sim = self.fn(config, number)
        value = sim.value if sim.outcome == "ok" else None
        if value is not None and not math.isfinite(value):
            sim = SimOutcome("diverged", None, sim.time, sim.metrics, f"value is {value}")
            value = None
        metrics = dict(sim.metrics)
        if value is not None:
            metrics.setdefault(self.space.metric, value)
        metrics["host_seconds"] = time.monotonic() - start
        return TrialResult(
            outcome=sim.outcome,
            value=value,
            metrics=metrics,
            exit_code=0 if sim.outcome == "ok" else None,
            error=sim.error,
            time_wall=float(sim.time),
            time_startup=None,
            time_training=float(sim.time),
            time_eval=None,
            stdout_path="",
            stderr_path="",
        )

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, **dict(self.info)}
