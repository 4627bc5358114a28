"""The Optuna samplers behind the common interface; here GP-BO's two changes to Optuna's GP."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from centaur_hpo.evaluate import FunctionEvaluator, SimOutcome
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.classical import FailuresAtWorst, GPSampler, relax_integer
from centaur_hpo.space import Param, SearchSpace
from centaur_hpo.study import Budget, StudyRunner


def test_relax_integer_only_widens_wide_unit_step_integers() -> None:
    wide = relax_integer(IntDistribution(4, 24), 16)
    assert wide == FloatDistribution(4, 24)
    log = relax_integer(IntDistribution(65536, 2097152, log=True), 16)
    assert log == FloatDistribution(65536, 2097152, log=True)
    assert relax_integer(IntDistribution(1, 16), 16) == IntDistribution(1, 16)
    assert relax_integer(IntDistribution(0, 100, step=5), 16) == IntDistribution(0, 100, step=5)
    unit = FloatDistribution(0.0, 1.0)
    assert relax_integer(unit, 16) is unit


SPACE = SearchSpace(
    params={
        "X": Param("X", "int", low=0, high=1000, default=500),
        "Y": Param("Y", "int", low=0, high=1000, default=500),
        "BATCH": Param("BATCH", "int", low=16, high=4096, log=True, power_of_two=True, default=64),
        "ACT": Param("ACT", "categorical", choices=("relu", "gelu"), default="relu"),
    },
    failure_value=100.0,
)


def bowl(config: dict, number: int) -> SimOutcome:
    if config["X"] + config["Y"] > 1500:  # a failure region the GP sees at the worst success
        return SimOutcome("oom", None, 1.0, error="out of memory")
    value = ((config["X"] - 731) / 1000) ** 2 + ((config["Y"] - 208) / 1000) ** 2
    value += 0.01 * abs(math.log2(config["BATCH"] / 256)) + (0.02 if config["ACT"] == "relu" else 0)
    return SimOutcome("ok", value, 1.0)


def _run(seed: int, n: int, **options: object) -> optuna.Study:
    study = optuna.create_study(sampler=make_sampler("gp", SPACE, seed, **options))
    StudyRunner(study, FunctionEvaluator(SPACE, bowl), budget=Budget(n_trials=n)).run()
    return study


@pytest.mark.slow
def test_relaxed_gp_proposes_valid_integers_and_finds_an_integer_optimum() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = _run(seed=0, n=30)
    sampler = study.sampler.base  # type: ignore[attr-defined]
    assert isinstance(sampler, GPSampler) and sampler.relax_integers
    assert sampler.failures_at_worst
    assert any(t.user_attrs["outcome"] == "oom" for t in study.trials)
    for t in study.trials:
        assert SPACE.validate(t.params) == []
        assert isinstance(t.params["X"], int) and t.params["BATCH"] & (t.params["BATCH"] - 1) == 0
    best = study.best_trial.params
    # Random search lands within 20 of (731, 208) in 30 trials with probability under 5 %.
    assert abs(best["X"] - 731) <= 20 and abs(best["Y"] - 208) <= 20, best
    assert best["BATCH"] == 256 and best["ACT"] == "gelu"
    # Same seed, same proposals (torch and numpy streams are seeded).
    again = _run(seed=0, n=14)
    assert [t.params for t in again.trials] == [t.params for t in study.trials[:14]]


def test_gp_options_give_optunas_gp_as_it_is() -> None:
    study = optuna.create_study()
    study.add_trial(
        create_trial(params={"X": 3}, distributions={"X": IntDistribution(0, 1000)}, value=1.0)
    )
    plain = make_sampler("gp", SPACE, 0, relax_integers=False, failures_at_worst=False)
    base = plain.base  # type: ignore[attr-defined]
    assert not base.relax_integers and not base.failures_at_worst
    assert base.infer_relative_search_space(study, study.trials[0]) == {
        "X": IntDistribution(0, 1000)
    }
    relaxed = make_sampler("gp", SPACE, 0).base  # type: ignore[attr-defined]
    assert relaxed.infer_relative_search_space(study, study.trials[0]) == {
        "X": FloatDistribution(0, 1000)
    }


def _trial(x: float, value: float, outcome: str) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"X": x},
        distributions={"X": FloatDistribution(0, 1)},
        value=value,
        user_attrs={"outcome": outcome},
    )


@pytest.mark.parametrize("direction, worst", [("minimize", 0.99), ("maximize", 0.97)])
def test_failures_at_worst_shows_failed_trials_at_the_worst_success(
    direction: str, worst: float
) -> None:
    study = optuna.create_study(direction=direction)
    for x, v, outcome in [(0.1, 0.98, "ok"), (0.2, 100.0, "oom"), (0.3, 0.99, "ok")]:
        study.add_trial(_trial(x, v, outcome))
    study.add_trial(_trial(0.4, 0.97, "ok"))
    running = study.ask()
    view = FailuresAtWorst(study)
    seen = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    assert [t.value for t in seen] == [0.98, worst, 0.99, 0.97, None]
    assert seen[-1].number == running.number and view.directions == study.directions
    # The storage keeps what was told.
    assert [t.value for t in study.get_trials(states=(TrialState.COMPLETE,))] == [
        0.98,
        100.0,
        0.99,
        0.97,
    ]


def test_failures_at_worst_without_a_success_changes_nothing() -> None:
    study = optuna.create_study()
    study.add_trial(_trial(0.2, 100.0, "oom"))
    assert [t.value for t in FailuresAtWorst(study)._get_trials()] == [100.0]
