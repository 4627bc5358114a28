"""The study loop: budget accounting, failure policies, trial 0, and resume after SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from centaur_hpo.evaluate import FunctionEvaluator, SimOutcome
from centaur_hpo.methods import make_sampler
from centaur_hpo.records import rows
from centaur_hpo.space import Param, SearchSpace
from centaur_hpo.study import Budget, StudyRunner, parse_duration

SPACE = SearchSpace(
    params={
        "LR": Param("LR", "float", low=1e-4, high=1.0, log=True, default=0.1),
        "DEPTH": Param("DEPTH", "int", low=1, high=12, default=4),
        "ACT": Param("ACT", "categorical", choices=("relu", "gelu", "tanh"), default="relu"),
    },
    failure_value=100.0,
)


def objective(config: dict, number: int) -> SimOutcome:
    if config["DEPTH"] >= 11:
        return SimOutcome("oom", None, 5.0, error="out of memory")
    value = (math.log10(config["LR"]) + 2) ** 2 + 0.1 * (config["DEPTH"] - 6) ** 2
    value += {"relu": 0.5, "gelu": 0.0, "tanh": 1.0}[config["ACT"]]
    return SimOutcome("ok", value, 30.0)


def _study(
    tmp_path: Path, method: str = "tpe", seed: int = 0, policy: str = "penalty"
) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 's.db'}",
        study_name=f"{method}-{seed}-{policy}",
        sampler=make_sampler(method, SPACE, seed, failure_policy=policy),
        load_if_exists=True,
    )


def test_budget_is_charged_uniformly_and_never_overshot(tmp_path: Path) -> None:
    study = _study(tmp_path)
    runner = StudyRunner(study, FunctionEvaluator(SPACE, objective), budget=Budget(seconds=100))
    summary = runner.run()
    charged = [r["time_charged"] for r in rows(study)]
    # Trial 0 runs (nothing known yet); then each trial is expected to cost the median charge
    # (30 s): starts at 0, 30, 60; a fourth would end at 120 > 100.
    assert charged == [30.0] * 3
    assert summary["used_seconds"] == 90.0


def test_trial_zero_is_the_default(tmp_path: Path) -> None:
    study = _study(tmp_path)
    StudyRunner(study, FunctionEvaluator(SPACE, objective), budget=Budget(n_trials=3)).run()
    first = study.trials[0]
    assert first.params == {"LR": 0.1, "DEPTH": 4, "ACT": "relu"}
    assert first.user_attrs["source"] == "default"


@pytest.mark.parametrize("policy", ["penalty", "constraint", "ignore"])
def test_failure_policies(tmp_path: Path, policy: str) -> None:
    space = SPACE
    study = _study(tmp_path, policy=policy)
    fails_always = lambda c, n: SimOutcome("oom", None, 1.0, error="out of memory")  # noqa: E731
    StudyRunner(
        study,
        FunctionEvaluator(space, fails_always),
        budget=Budget(n_trials=3),
        failure_policy=policy,
    ).run()  # type: ignore[arg-type]
    states = {t.state.name for t in study.trials}
    if policy == "ignore":
        assert states == {"FAIL"}
    else:
        assert states == {"COMPLETE"} and all(t.values == [100.0] for t in study.trials)
    assert all(t.user_attrs["outcome"] == "oom" for t in study.trials)


@pytest.mark.parametrize("method", ["random", "tpe", "cmaes", "gp"])
def test_same_seed_same_proposals(tmp_path: Path, method: str) -> None:
    def configs(sub: str) -> list[dict]:
        d = tmp_path / sub
        d.mkdir()
        study = _study(d, method, seed=3)
        StudyRunner(study, FunctionEvaluator(SPACE, objective), budget=Budget(n_trials=14)).run()
        return [t.params for t in study.trials]

    a, b = configs("a"), configs("b")
    assert a == b
    assert len({tuple(sorted(c.items())) for c in a}) > 10


def test_parse_duration() -> None:
    assert parse_duration("24h") == 86400 and parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90 and parse_duration(12) == 12
    with pytest.raises(ValueError, match="cannot read duration"):
        parse_duration("soon")


SLOW_SCRIPT = """
import math, os, time
LR = 0.1
DEPTH = 4
ACT = "relu"
time.sleep(float(os.environ.get("SLEEP", "0.6")))
v = (math.log10(LR) + 2) ** 2 + 0.1 * (DEPTH - 6) ** 2 + {"relu": 0.5, "gelu": 0.0, "tanh": 1.0}[ACT]
print("---")
print(f"loss: {v:.9f}")
"""
SPACE_TOML = """
metric = "loss"
[params.LR]
type = "float"
low = 0.0001
high = 1.0
log = true
[params.DEPTH]
type = "int"
low = 1
high = 12
[params.ACT]
type = "categorical"
choices = ["relu", "gelu", "tanh"]
"""


def _tune_cmd(folder: Path, study: str, n: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "centaur_hpo.cli",
        "tune",
        str(folder / "train.py"),
        "--method",
        "cmaes",
        "--seed",
        "7",
        "--trials",
        str(n),
        "--study",
        study,
        "--run-dir",
        str(folder / "runs"),
    ]


def _running_trial(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(db, timeout=5)
        # A trial whose parameters are written is running its script (a kill while it is still
        # being proposed leaves an orphan that never ran: failed, not re-run).
        row = con.execute(
            "select number from trials t where state='RUNNING' and "
            "(select count(*) from trial_params p where p.trial_id = t.trial_id) = 3"
        ).fetchone()
        con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@pytest.mark.slow
def test_resume_after_sigkill_mid_trial(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(SLOW_SCRIPT)
    (tmp_path / "train.space.toml").write_text(SPACE_TOML)
    n = 12
    # The reference: the same study, never interrupted.
    env = {**os.environ, "SLEEP": "0.05"}
    subprocess.run(_tune_cmd(tmp_path, "ref", n), check=True, env=env, capture_output=True)
    ref = optuna.load_study(study_name="ref", storage=f"sqlite:///{tmp_path / 'runs/ref/study.db'}")
    ref_params = [t.params for t in ref.trials]

    db = tmp_path / "runs/killed/study.db"
    proc = subprocess.Popen(
        _tune_cmd(tmp_path, "killed", n),
        env={**os.environ, "SLEEP": "0.6"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (_running_trial(db) or 0) < 9:
        time.sleep(0.05)
    killed_at = _running_trial(db)
    assert killed_at is not None and killed_at >= 9
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    storage = f"sqlite:///{db}"
    before = {
        t.number: (t.params, t.values)
        for t in optuna.load_study(study_name="killed", storage=storage).trials
        if t.state.name == "COMPLETE"
    }
    out = subprocess.run(_tune_cmd(tmp_path, "killed", n), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"[{killed_at}] were interrupted" in out.stderr
    study = optuna.load_study(study_name="killed", storage=storage)
    trials = study.trials
    # Nothing completed was lost.
    for number, (params, values) in before.items():
        assert trials[number].params == params and trials[number].values == values
    # The interrupted trial was re-run once, with its parameters.
    interrupted = trials[killed_at]
    assert interrupted.state.name == "FAIL" and interrupted.user_attrs["outcome"] == "interrupted"
    reruns = [t for t in trials if t.user_attrs.get("centaur:rerun_of") == killed_at]
    assert len(reruns) == 1 and reruns[0].params == interrupted.params
    assert reruns[0].state.name == "COMPLETE"
    # CMA-ES continued its state: the completed sequence equals the uninterrupted run's.
    completed = [t.params for t in trials if t.state.name == "COMPLETE"]
    assert len(completed) == n
    assert completed == ref_params
