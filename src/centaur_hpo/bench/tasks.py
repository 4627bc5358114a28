"""What a grid's task names mean, and how a worker builds the evaluator for one.

A task is named in one of four ways, tried in this order:

* ``fn:MODULE:FACTORY`` or ``fn:PATH/TO/FILE.py:FACTORY`` - a Python factory
  ``FACTORY(seed) -> (SearchSpace, fn, info)`` with ``fn(config, number) -> SimOutcome``. It is
  loaded by every worker, so it must be importable there (a file path always is, on a shared
  file system). Used by tests and for private simulated objectives.
* a simulated task of :mod:`centaur_hpo.tasks.simulated` (``surrogate:autoresearch-paper``,
  ``bbob:f1:d5:i1``, ``hpolib:...``, ``sklearn:...``): run by ``FunctionEvaluator``.
* a built-in script task (``cpu-gpt``) or the path of a training script: run for real by
  ``ScriptEvaluator``, one trial folder per trial under the grid's output folder.

A grid may give a task a short alias (``sphere=fn:tests/objectives.py:sphere``): the alias names
the cells, the spec says what to run, and both are recorded in the study.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from centaur_hpo.evaluate import Evaluator, FunctionEvaluator, ScriptEvaluator
from centaur_hpo.space import SearchSpace

Factory = Callable[[int], tuple[SearchSpace, Callable[..., Any], dict[str, Any]]]


@dataclass
class BuiltTask:
    """A task ready to run one cell: its space, evaluator and what is known about it."""

    space: SearchSpace
    evaluator: Evaluator
    info: dict[str, Any] = field(default_factory=dict)
    simulated: bool = True


def split_alias(item: str) -> tuple[str, str]:
    """``"alias=spec"`` -> (alias, spec); a plain spec is its own alias.

    ``=`` only counts as an alias marker before any ``:`` or ``/`` so specs themselves never
    need quoting.
    """
    head, sep, tail = item.partition("=")
    if sep and head and not re.search(r"[:/\\]", head):
        return head.strip(), tail.strip()
    return item.strip(), item.strip()


def _load_factory(spec: str) -> Factory:
    target = spec[len("fn:") :]
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise ValueError(f"task {spec!r}: write fn:MODULE:FACTORY or fn:PATH.py:FACTORY")
    if where.endswith(".py"):
        path = Path(where).resolve()
        if not path.is_file():
            raise ValueError(f"task {spec!r}: no file {path}")
        mod_name = "_centaur_task_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise ValueError(f"task {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"task {spec!r}: {where} has no callable {attr!r}")
    return factory


def _simulated():  # type: ignore[no-untyped-def]
    """The simulated-task module, or None while it is not installed."""
    try:
        return importlib.import_module("centaur_hpo.tasks.simulated")
    except ImportError:
        return None


def _script_path(spec: str) -> Path | None:
    try:
        from centaur_hpo.tasks.registry import SCRIPT_TASKS
    except ImportError:  # pragma: no cover - the registry ships with the package
        SCRIPT_TASKS = {}
    if spec in SCRIPT_TASKS:
        return Path(spec)
    p = Path(spec)
    return p if p.suffix == ".py" and p.is_file() else None


def task_kind(spec: str) -> str:
    """``function``, ``simulated`` or ``script``: how ``spec`` will run (without running it)."""
    if spec.startswith("fn:"):
        return "function"
    if _script_path(spec) is not None:
        return "script"
    return "simulated"


def build_task(
    spec: str,
    seed: int,
    *,
    alias: str | None = None,
    run_dir: Path | None = None,
    trial_budget: float | None = None,
    device: str = "cpu",
    failure_value: float | None = None,
) -> BuiltTask:
    """Build the evaluator for ``spec`` as seen by seed ``seed`` (the task's own noise seed).

    ``failure_value`` overrides the space's value for failed trials (the paper tells failures
    to the optimizer as 100.0).
    """
    alias = alias or spec
    kind = task_kind(spec)
    if kind == "script":
        from centaur_hpo.api import resolve_target

        script_file = _script_path(spec)
        assert script_file is not None
        is_builtin = not script_file.is_file()
        script, space, _ = resolve_target(
            None if is_builtin else script_file, spec if is_builtin else None, None, None
        )
        if failure_value is not None:
            space = replace(space, failure_value=failure_value)
        tb = trial_budget if trial_budget is not None else space.trial_budget
        if run_dir is None:
            raise ValueError(f"task {spec!r} runs a training script and needs a run folder")
        ev = ScriptEvaluator(
            script=script, space=space, run_dir=run_dir, trial_budget=tb, device=device
        )
        return BuiltTask(space, ev, {"task": alias, "task_spec": spec, "kind": kind}, False)
    if kind == "function":
        space, fn, info = _load_factory(spec)(seed)
    else:
        sim = _simulated()
        if sim is None:
            raise ValueError(
                f"unknown task {spec!r}: the simulated tasks (centaur_hpo.tasks.simulated) are "
                "not installed, and it is neither a built-in script task nor a script path"
            )
        space, fn, info = sim.get_simulated_task(spec, seed=seed)
    if failure_value is not None:
        space = replace(space, failure_value=failure_value)
    info = {**dict(info or {}), "task": alias, "task_spec": spec, "kind": kind}
    ev = FunctionEvaluator(space=space, fn=fn, name=alias, info=_jsonable(info))
    return BuiltTask(space, ev, info, True)


def list_tasks() -> list[str]:
    """Every task name the installed modules know (simulated ones, then script tasks)."""
    names: list[str] = []
    sim = _simulated()
    if sim is not None:
        names.extend(sim.list_simulated_tasks())
    from centaur_hpo.tasks.registry import SCRIPT_TASKS

    names.extend(sorted(SCRIPT_TASKS))
    return names


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in info.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
            out[k] = list(v)
        elif isinstance(v, dict):
            out[k] = _jsonable(v)
        else:
            out[k] = repr(v)
    return out
