"""The classical samplers that Optuna and SMAC3 provide, wrapped to propose repaired configurations.

Each factory takes the search space and a seed. With the ``constraint`` failure policy the study
engine marks each trial feasible or not (``Trial.set_constraint``), and the samplers that model
feasibility (TPE, GP) then learn where configurations fail rather than only that those
configurations scored the penalty value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import optuna
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


def gp_sampler(space: SearchSpace, seed: int | None, constraints: bool = False) -> RepairingSampler:
    """Optuna's Gaussian-process BO (needs torch, which the package already depends on)."""
    base = optuna.samplers.GPSampler(
        seed=seed,
        n_startup_trials=10,
        deterministic_objective=False,
    )
    return RepairingSampler(base, space)
