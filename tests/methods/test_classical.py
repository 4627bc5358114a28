"""The Optuna samplers behind the common interface; here the GP's relaxed integer search."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from centaur_hpo.evaluate import FunctionEvaluator, SimOutcome
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.classical import RelaxedGPSampler, relax_integer
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
)


def bowl(config: dict, number: int) -> SimOutcome:
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
    assert isinstance(sampler, RelaxedGPSampler)
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


def test_gp_option_keeps_optuna_integer_search() -> None:
    sampler = make_sampler("gp", SPACE, 0, relax_integers=False)
    base = sampler.base  # type: ignore[attr-defined]
    assert type(base) is optuna.samplers.GPSampler
