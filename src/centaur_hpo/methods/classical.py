"""The classical samplers that Optuna and SMAC3 provide, wrapped to propose repaired configurations.

Each factory takes the search space and a seed. With the ``constraint`` failure policy the study
engine marks each trial feasible or not (``Trial.set_constraint``), and the samplers that model
feasibility (TPE, GP) then learn where configurations fail rather than only that those
configurations scored the penalty value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.methods.base import OUTCOME_KEY, RepairingSampler
from centaur_hpo.space import SearchSpace

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


def failed_constraint(trial: FrozenTrial) -> Sequence[float]:
    """Optuna constraint value: > 0 (infeasible) for a failed trial, <= 0 for a successful one."""
    return [1.0 if trial.user_attrs.get(OUTCOME_KEY, "ok") != "ok" else -1.0]


def random_sampler(
    space: SearchSpace, seed: int | None, constraints: bool = False
) -> RepairingSampler:
    return RepairingSampler(optuna.samplers.RandomSampler(seed=seed), space)


def tpe_sampler(
    space: SearchSpace, seed: int | None, constraints: bool = False
) -> RepairingSampler:
    """Multivariate TPE with grouping off and the constant liar for parallel workers."""
    base = optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        constant_liar=True,
        n_startup_trials=10,
    )
    return RepairingSampler(base, space)


class RelaxedGPSampler(optuna.samplers.GPSampler):
    """Optuna's GPSampler whose acquisition search treats wide integer ranges as continuous.

    Why: the GP models an integer like a float already; only the search for the acquisition
    maximum differs. For an integer with more than 16 values Optuna runs a scalar line search
    per start point that evaluates the GP at one point at a time, and over the autoresearch
    space (DEPTH has 21 values, ASPECT_RATIO 97, TOTAL_BATCH_SIZE two million before the
    power-of-two repair) that search was 90 % of a 1.2 s suggestion. Searched as floats they
    join the batched gradient ascent, and the repair rounds them (and snaps powers of two) as it
    does for CMA-ES. Integers with few values (and categoricals) keep Optuna's exhaustive search.
    Measured in benchmarks/RESULTS.md: speed per suggestion and the best value it reaches.
    """

    def __init__(self, *args: object, max_discrete: int = 16, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_discrete = max_discrete

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        inner = super().infer_relative_search_space(study, trial)
        return {name: relax_integer(d, self.max_discrete) for name, d in inner.items()}


def relax_integer(dist: BaseDistribution, max_discrete: int) -> BaseDistribution:
    """An integer distribution with more than ``max_discrete`` values as a float one."""
    if not isinstance(dist, IntDistribution) or dist.step != 1:
        return dist
    if dist.high - dist.low + 1 <= max_discrete:
        return dist
    return FloatDistribution(dist.low, dist.high, log=dist.log)


def gp_sampler(
    space: SearchSpace,
    seed: int | None,
    constraints: bool = False,
    *,
    relax_integers: bool = True,
) -> RepairingSampler:
    """Optuna's Gaussian-process BO (torch is already a dependency).

    ``relax_integers=False`` (``-o relax_integers=false``) keeps Optuna's own integer search,
    which is slow on wide ranges (see :class:`RelaxedGPSampler`).
    """
    options = {"seed": seed, "n_startup_trials": 10, "deterministic_objective": False}
    base = RelaxedGPSampler(**options) if relax_integers else optuna.samplers.GPSampler(**options)
    return RepairingSampler(base, space)
