"""Shared pieces of the LLM tests: spaces, a simulated task, and a study runner around them."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.evaluate import FunctionEvaluator, SimOutcome
from centaur_hpo.space import MultipleOf, Param, SearchSpace
from centaur_hpo.spaces import space_for_script
from centaur_hpo.study import Budget, StudyRunner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def autoresearch_space(tune: list[str] | None = None) -> SearchSpace:
    """The paper's 14-HP space (or a ``--tune`` subset of it), built from the autoresearch
    stand-in as a user would get it."""
    return space_for_script(FIXTURES / "autoresearch_train.py", "autoresearch", tune)


def mixed_space() -> SearchSpace:
    """Every kind of parameter, including ranges that cross zero and a joint constraint."""
    params = {
        "LR": Param("LR", "float", 1e-4, 0.3, log=True, default=0.01),
        "SHIFT": Param("SHIFT", "float", -0.25, 0.3, default=0.0),
        "STEPS": Param("STEPS", "int", 7, 1234, default=100),
        "OFFSET": Param("OFFSET", "int", -12, 5, default=0),
        "BATCH": Param("BATCH", "int", 8, 64, log=True, power_of_two=True, default=16),
        "TOTAL": Param("TOTAL", "int", 64, 512, log=True, power_of_two=True, default=128),
        "ACT": Param("ACT", "categorical", choices=("relu", "gelu", "silu"), default="gelu"),
        "HEADS": Param("HEADS", "categorical", choices=(2, 4, 8), default=4),
        "BIAS": Param("BIAS", "bool", default=True),
    }
    return SearchSpace(
        params=params,
        constraints=[MultipleOf("TOTAL", "BATCH * 2")],
        metric="loss",
        direction="minimize",
        failure_value=10.0,
    )


def small_space() -> SearchSpace:
    """Three parameters: fast prompts for the study-level tests."""
    return SearchSpace(
        params={
            "LR": Param("LR", "float", 0.001, 0.1, log=True, default=0.01),
            "DEPTH": Param("DEPTH", "int", 2, 12, default=4),
            "ACT": Param("ACT", "categorical", choices=("relu", "gelu"), default="relu"),
        },
        metric="loss",
        direction="minimize",
        failure_value=10.0,
    )


def small_objective(config: dict[str, Any], number: int) -> SimOutcome:
    """A deterministic loss with an out-of-memory region (DEPTH > 10) and 1 s simulated time."""
    if config["DEPTH"] > 10:
        return SimOutcome("oom", None, 1.0, error="CUDA out of memory (simulated)")
    loss = (math.log10(config["LR"]) + 2) ** 2 + 0.05 * (config["DEPTH"] - 6) ** 2
    loss += 0.1 if config["ACT"] == "relu" else 0.0
    return SimOutcome("ok", round(loss, 6), 1.0)


def run_study(
    sampler: optuna.samplers.BaseSampler,
    n_trials: int,
    *,
    space: SearchSpace | None = None,
    name: str = "s",
    storage: str | None = None,
    budget: Budget | None = None,
) -> tuple[optuna.Study, dict[str, Any] | str]:
    """Run ``n_trials`` of the simulated task; returns the study and the summary or stop reason."""
    from centaur_hpo.study import StudyStopped

    space = space or small_space()
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        direction=space.direction,
        load_if_exists=True,
    )
    runner = StudyRunner(
        study=study,
        evaluator=FunctionEvaluator(space, small_objective, name="small"),
        budget=budget or Budget(n_trials=n_trials),
        heartbeat_interval=60.0,
    )
    try:
        return study, runner.run()
    except StudyStopped as e:
        return study, str(e)


def copy_autoresearch(folder: Path) -> Path:
    """The autoresearch stand-in (train.py + prepare.py) in ``folder``; returns train.py."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "autoresearch_train.py", folder / "train.py")
    shutil.copy(FIXTURES / "prepare.py", folder / "prepare.py")
    return folder / "train.py"


# -- the LLM methods on a real script task ------------------------------------------------------
CASSETTES = Path(__file__).parent / "cassettes"
#: Few LLM calls per method: the embedded model takes seconds per call on 2 cores.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "llm_agent": {"hardware": "CPU only, 2 cores; memory cap 76 GiB (address-space limit)"},
    "llambo": {"n_initial": 1, "n_candidates": 2, "n_surrogate": 1},
    "llm_warm_start": {"n_warm": 2},
}
N_TRIALS = {"llm_agent": 3, "llambo": 3, "llm_warm_start": 4}
#: The embedded-model tests tune five of the 14 knobs: prompts and replies a third as long, so a
#: call takes seconds, not tens of seconds, on a busy 2-core machine.
SMALL_TUNE = ["DEPTH", "MATRIX_LR", "DEVICE_BATCH_SIZE", "TOTAL_BATCH_SIZE", "WINDOW_PATTERN"]


def tune_method(method: str, folder: Path, llm: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    """``centaur tune`` of the autoresearch stand-in (real trial subprocesses, 1 s budget)."""
    from centaur_hpo.api import tune

    script = folder / "train.py"
    if not script.exists():
        copy_autoresearch(folder)
    kwargs.setdefault("method_options", METHOD_OPTIONS[method])
    kwargs.setdefault("n_trials", N_TRIALS[method])
    return tune(
        script,
        space="autoresearch",
        method=method,
        trial_budget=1,
        llm=llm,
        run_dir=folder / "runs",
        progress=lambda _s: None,
        **kwargs,
    )


def open_result(result: Any) -> optuna.Study:
    return optuna.load_study(study_name=result.study_name, storage=result.storage)


def trial_table(study: optuna.Study) -> list[dict[str, Any]]:
    """What must match between a study and its replay: params, values, outcomes, sources."""
    from centaur_hpo.methods.base import SOURCE_KEY

    return [
        {
            "number": t.number,
            "params": dict(t.params),
            "value": t.user_attrs.get("value"),
            "outcome": t.user_attrs.get("outcome"),
            "source": t.system_attrs.get(SOURCE_KEY, t.user_attrs.get("source")),
        }
        for t in study.get_trials(deepcopy=False)
    ]


def check_llm_records(
    study: optuna.Study, method: str, tune: list[str] | None = None
) -> list[dict[str, Any]]:
    """Every LLM call is in the study's records, valid, and tied to a trial the LLM proposed."""
    from centaur_hpo.llm import llm_calls
    from centaur_hpo.methods.base import SOURCE_KEY

    space = autoresearch_space(tune)
    recs = llm_calls(study)
    assert recs, "no LLM call was recorded"
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for r in recs:
        assert r["method"] == method and r["status"] in ("ok", "invalid"), r.get("error")
        assert r["messages"] and r["reply"] is not None and r["prompt_hash"]
        assert by_number[r["trial"]].system_attrs.get(SOURCE_KEY) == "llm"
        if r["status"] == "ok" and r["purpose"] in ("propose", "candidate"):
            assert space.validate(r["parsed"]) == []
    return recs
