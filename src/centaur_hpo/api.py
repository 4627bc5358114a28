"""``centaur_hpo.tune(...)``: the whole `centaur tune` command as one Python call, for notebooks.

It resolves the script (or built-in task), its search space, the storage and study name, builds
the method and the evaluator, and runs the study loop. Running it again with the same arguments
continues the same study.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.evaluate import ScriptEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import optuna_quiet
from centaur_hpo.records import STUDY_INFO_KEY, best_trial, export_csv, get_study_attr
from centaur_hpo.runner import parse_bytes
from centaur_hpo.script import config_diff
from centaur_hpo.space import SearchSpace
from centaur_hpo.spaces import space_for_script
from centaur_hpo.storage import open_storage
from centaur_hpo.study import Budget, StudyRunner, StudyStopped, parse_duration


@dataclass
class TuneResult:
    """What a finished (or stopped) study hands back."""

    study_name: str
    storage: str
    run_dir: Path
    best_value: float | None
    best_params: dict[str, Any] | None
    default_value: float | None
    used_seconds: float
    n_trials: int
    csv_path: Path | None = None
    diff: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    #: LLM cost, reported apart from training time: requests, calls, tokens, latency seconds
    llm_usage: dict[str, Any] | None = None

    @property
    def improvement(self) -> float | None:
        if self.best_value is None or self.default_value is None:
            return None
        return self.default_value - self.best_value


def default_storage(run_dir: Path) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def resolve_target(
    script: str | Path | None,
    task: str | None,
    space: str | Path | None,
    tune_params: list[str] | None,
) -> tuple[Path, SearchSpace, str]:
    """(script path, search space, a short name for study names) for a script or a task."""
    if (script is None) == (task is None):
        raise ValueError("give either a training script or --task NAME (not both)")
    if task is not None:
        from centaur_hpo.tasks.registry import script_task

        script, default_space = script_task(task)
        space = space or default_space
        name = task
    else:
        name = Path(script).resolve().parent.name + "-" + Path(script).stem  # type: ignore[arg-type]
    script = Path(script)  # type: ignore[arg-type]
    return (
        script,
        space_for_script(script, space, tune_params),
        re.sub(r"[^A-Za-z0-9_.-]", "-", name),
    )


def _simulated_task(task: str, seed: int) -> Any:
    """The built task for a simulated ``--task`` name, or None for a script task."""
    from centaur_hpo.tasks.registry import SCRIPT_TASKS

    if task in SCRIPT_TASKS:
        return None
    from centaur_hpo.bench.tasks import build_task, task_kind

    if task_kind(task) == "script":
        return None
    return build_task(task, seed)


def tune(
    script: str | Path | None = None,
    *,
    task: str | None = None,
    method: str = "tpe",
    seed: int = 0,
    n_trials: int | None = None,
    budget: str | float | None = None,
    budget_clock: str = "training",
    trial_budget: str | float | None = None,
    timeout: str | float | None = None,
    memory_cap: str | int | None = None,
    device: str = "cpu",
    storage: str | None = None,
    study: str | None = None,
    space: str | Path | None = None,
    tune_params: list[str] | None = None,
    metric: str | None = None,
    direction: str | None = None,
    failure_policy: str = "penalty",
    run_dir: str | Path = "runs",
    n_jobs: int = 1,
    gpus: list[str] | None = None,
    llm: Any = None,
    method_options: dict[str, Any] | None = None,
    llm_fallback: bool = False,
    replay: str | Path | None = None,
    budget_includes_llm: bool = False,
    default_first: bool = True,
    progress: Any = None,
) -> TuneResult:
    """Tune a script (or a built-in task) under a budget; rerun the same call to resume."""
    optuna_quiet()
    simulated = _simulated_task(task, seed) if script is None and task is not None else None
    if simulated is not None:
        # A simulated task (autoresearch-sim, bbob:..., surrogate:...) has no script: its
        # evaluator advances a simulated clock, so a 24 h study replays in seconds.
        if method == "code_agent":
            raise ValueError("the code-editing agent needs a training script, not a simulated task")
        if space is not None or tune_params:
            raise ValueError(
                "--space and --tune apply to scripts; a simulated task has its own space"
            )
        script_path, search_space, short = (
            None,
            simulated.space,
            re.sub(r"[^A-Za-z0-9_.-]", "-", task),
        )
    else:
        script_path, search_space, short = resolve_target(script, task, space, tune_params)
    if metric or direction:
        search_space = replace(
            search_space,
            metric=metric or search_space.metric,
            direction=direction or search_space.direction,  # type: ignore[arg-type]
        )
    study_name = study or f"{short}-{method}-s{seed}"
    run_path = Path(run_dir) / study_name
    storage_url = storage or default_storage(run_path)
    run_path.mkdir(parents=True, exist_ok=True)
    tb = parse_duration(trial_budget) if trial_budget is not None else search_space.trial_budget
    cap = parse_bytes(memory_cap if memory_cap is not None else search_space.memory_cap)
    if memory_cap is not None:
        # One setting: the cap the runner enforces is the cap every method (and LLM) is told.
        search_space = replace(search_space, memory_cap=str(memory_cap))
    if budget is None and n_trials is None:
        raise ValueError("give a budget (--budget 10m) or a number of trials (--trials 20)")
    if budget_clock not in ("training", "wall"):
        raise ValueError("--budget-clock must be 'training' or 'wall'")
    llm, method_options = _llm_settings(method, llm, method_options, llm_fallback, replay)
    if method in ("llm_agent", "llambo", "llm_warm_start", "centaur"):
        method_options.setdefault("hardware", hardware_text(device, cap, tb))
    code_agent = method == "code_agent"  # edits the script itself: its own loop, no sampler
    if code_agent and task is not None:  # a built-in task brings its trusted evaluator
        from centaur_hpo.tasks.registry import code_agent_defaults

        for key, value in code_agent_defaults(task).items():
            method_options.setdefault(key, value)
    sampler = (
        None
        if code_agent
        else make_sampler(
            method,
            search_space,
            seed,
            failure_policy=failure_policy,
            llm=llm,
            **method_options,
        )
    )
    evaluator = (
        simulated.evaluator
        if simulated is not None
        else ScriptEvaluator(
            script=script_path,
            space=search_space,
            run_dir=run_path,
            trial_budget=tb,
            timeout=parse_duration(timeout),
            memory_cap=cap,
            device=device,
        )
    )
    ostudy = optuna.create_study(
        storage=open_storage(storage_url),
        study_name=study_name,
        sampler=sampler,
        direction=search_space.direction,
        load_if_exists=True,
    )
    _check_same_study(ostudy, method, seed)
    code_budget = Budget(parse_duration(budget), budget_clock, n_trials, budget_includes_llm)  # type: ignore[arg-type]
    runner = (
        _code_agent_runner(
            ostudy,
            script_path,
            search_space,
            run_path,
            storage_url,
            tb,
            cap,
            device,
            code_budget,
            failure_policy,
            llm,
            seed,
            method_options,
            progress,
            task,
            parse_duration(timeout),
            n_jobs,
        )
        if code_agent
        else StudyRunner(
            study=ostudy,
            evaluator=evaluator,
            budget=Budget(
                parse_duration(budget),
                budget_clock,  # type: ignore[arg-type]
                n_trials,
                include_llm=budget_includes_llm,
            ),
            failure_policy=failure_policy,  # type: ignore[arg-type]
            default_first=default_first,
            n_jobs=n_jobs,
            slots=gpus,
            progress=progress
            if progress is not None
            else (lambda s: print(s, file=sys.stderr, flush=True)),
            info={
                "method": method,
                "seed": seed,
                "script": str(script_path.resolve()) if script_path else None,
                "task": task,
                "command": " ".join(sys.argv) if sys.argv else None,
                **_llm_info(sampler),
            },
        )
    )
    stopped = None
    try:
        summary = runner.run()
    except StudyStopped as e:
        stopped = str(e)
        summary = runner.summary()
        summary["stopped"] = stopped
    csv_path = export_csv(ostudy, run_path / "trials.csv")
    best = best_trial(ostudy, search_space.direction)
    default = next(
        (
            t
            for t in ostudy.get_trials(deepcopy=False)
            if t.user_attrs.get("source") == "default" and t.user_attrs.get("outcome") == "ok"
        ),
        None,
    )
    diff = (
        config_diff(script_path, {**search_space.fixed, **best.params})
        if best and script_path
        else ""
    )
    if code_agent:
        diff = runner.best_script()[1]  # type: ignore[attr-defined]
    if stopped:
        summary["stopped"] = stopped
    return TuneResult(
        study_name=study_name,
        storage=storage_url,
        run_dir=run_path,
        best_value=best.user_attrs["value"] if best else None,
        best_params=dict(best.params) if best else None,
        default_value=default.user_attrs["value"] if default else None,
        used_seconds=runner.used(),
        n_trials=summary["n_trials"],
        csv_path=csv_path,
        diff=diff,
        summary=summary,
        llm_usage=_llm_usage(ostudy),
    )


def _code_agent_runner(
    study: optuna.Study,
    script: Path,
    space: SearchSpace,
    run_path: Path,
    storage_url: str,
    trial_budget: float | None,
    memory_cap: int | None,
    device: str,
    budget: Budget,
    failure_policy: str,
    llm: Any,
    seed: int,
    options: dict[str, Any],
    progress: Any,
    task: str | None,
    timeout: float | None,
    n_jobs: int,
) -> StudyRunner:
    """The code agent's loop (``--method code_agent``): see :mod:`centaur_hpo.methods.code_agent`."""
    from centaur_hpo.methods.code_agent import code_agent_runner

    return code_agent_runner(
        study=study,
        script=script,
        space=space,
        run_dir=run_path,
        storage_url=storage_url,
        trial_budget=trial_budget,
        memory_cap=memory_cap,
        device=device,
        budget=budget,
        failure_policy=failure_policy,
        llm=llm,
        seed=seed,
        options=options,
        progress=progress
        if progress is not None
        else (lambda s: print(s, file=sys.stderr, flush=True)),
        info={
            "method": "code_agent",
            "seed": seed,
            "script": str(script.resolve()),
            "task": task,
            "command": " ".join(sys.argv) if sys.argv else None,
        },
        timeout=timeout,
        n_jobs=n_jobs,
    )


def _llm_settings(
    method: str,
    llm: Any,
    options: dict[str, Any] | None,
    fallback: bool,
    replay: str | Path | None,
) -> tuple[Any, dict[str, Any]]:
    """The ``llm`` and method options for the LLM flags (--replay, --llm-fallback)."""
    from centaur_hpo.methods import LLM_METHODS

    options = dict(options or {})
    if method not in LLM_METHODS:
        if llm is not None or replay is not None or fallback:
            raise ValueError(
                f"--llm, --replay and --llm-fallback apply to LLM methods, not {method}"
            )
        return None, options
    if replay is not None:
        if llm is not None:
            raise ValueError("give --llm or --replay, not both (--replay answers from a recording)")
        llm = f"replay:{replay}"
    if fallback:
        options.setdefault("fallback", True)
    return llm, options


def hardware_text(device: str, cap: int | None, trial_budget: float | None) -> str:
    """The limits an LLM method states in its prompt, from the settings that enforce them.

    Why here: the reference code told its LLM a memory size that was not the enforced cap; built
    from the same ``cap`` the evaluator applies, the prompt cannot disagree with the run.
    """
    how = "PyTorch's CUDA memory fraction" if device == "cuda" else "an address-space limit"
    parts = [f"trials run on {'GPU' if device == 'cuda' else 'CPU'}"]
    if cap:
        parts.append(
            f"memory cap {cap / 2**30:.3g} GiB per trial ({how}); a configuration that needs "
            "more fails with out-of-memory"
        )
    if trial_budget:
        parts.append(f"each trial trains for {trial_budget:g} s")
    return "; ".join(parts) + "."


def _llm_info(sampler: Any) -> dict[str, Any]:
    """Who answers the LLM calls, for the study's record (no key is ever in it)."""
    client = getattr(sampler, "llm", None)
    describe = getattr(client, "describe", None)
    return {"llm": describe()} if callable(describe) else {}


def _llm_usage(study: optuna.Study) -> dict[str, Any] | None:
    from centaur_hpo.llm.records import llm_usage

    usage = llm_usage(study)
    return usage if usage["requests"] else None


def _check_same_study(study: optuna.Study, method: str, seed: int) -> None:
    text = get_study_attr(study, STUDY_INFO_KEY)
    if not text:
        return
    info = json.loads(text)
    if info.get("method") not in (None, method) or info.get("seed") not in (None, seed):
        raise StudyStopped(
            f"study {study.study_name!r} was run with --method {info.get('method')} --seed "
            f"{info.get('seed')}; resume it with those, or pass --study NEW_NAME for a new study"
        )
