"""The simulated-task registry, run through the real study loop (StudyRunner + FunctionEvaluator)."""

from __future__ import annotations

import optuna
import pytest

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.records import rows
from centaur_hpo.study import Budget, StudyRunner
from centaur_hpo.tasks.simulated import get_simulated_task, list_simulated_tasks


def test_unknown_task_lists_the_known_forms() -> None:
    with pytest.raises(ValueError, match="bbob:f<k>:d<d>:i<i>"):
        get_simulated_task("nonsense", 0)


def test_listed_tasks_include_the_paper_landscape_and_bbob() -> None:
    names = list_simulated_tasks()
    assert "autoresearch-sim" in names
    assert "bbob:f1:d5:i1" in names


def test_paper_protocol_replays_a_24h_study_in_seconds() -> None:
    """24 h of simulated trial time, trial 0 = default, failures told as 100.0."""
    space, fn, info = get_simulated_task("autoresearch-sim", seed=0)
    study = optuna.create_study(sampler=make_sampler("random", space, 0))
    runner = StudyRunner(
        study,
        FunctionEvaluator(space, fn, "autoresearch-sim", info),
        budget=Budget(seconds=24 * 3600),
    )
    summary = runner.run()
    table = rows(study)
    assert table[0]["source"] == "default" or table[0]["param:DEPTH"] == 8
    assert abs(summary["used_seconds"] - 24 * 3600) < 400  # within one trial of the budget
    assert 250 < len(table) < 700  # 5-minute trials, failures cost less
    failed = [r for r in table if r["outcome"] != "ok"]
    assert failed and all(r["told_value"] == 100.0 for r in failed)
    assert {r["outcome"] for r in failed} <= {"oom", "diverged"}
    assert summary["best_value"] < 0.995


@pytest.mark.parametrize("spec", ["bbob:f2:d3:i1", "hpobench:kc1", "sklearn:knn-wine"])
def test_every_kind_runs_through_the_function_evaluator(spec: str) -> None:
    space, fn, info = get_simulated_task(spec, seed=0)
    result = FunctionEvaluator(space, fn, spec, info).evaluate(0, space.default_config())
    assert result.outcome == "ok" and result.value is not None
    assert result.time_wall > 0 and result.metrics[space.metric] == result.value
    assert info["simulated"] is True and info["description"]
