"""The classical samplers that Optuna and SMAC3 provide, wrapped to propose repaired configurations.

Each factory takes the search space and a seed. With the ``constraint`` failure policy the study
engine marks each trial feasible or not (``Trial.set_constraint``), and the samplers that model
feasibility (TPE, GP) then learn where configurations fail rather than only that those
configurations scored the penalty value.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.methods.base import RepairingSampler, trial_failed
from centaur_hpo.space import SearchSpace


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


class GPSampler(optuna.samplers.GPSampler):
    """Optuna's GPSampler with two changes for HPO spaces with failures, each switchable.

    ``relax_integers``: the acquisition search treats integers with more than 16 values as
    floats. The GP models an integer like a float already; only the search for the acquisition
    maximum differs. For such an integer Optuna runs a scalar line search per start point that
    evaluates the GP at one point at a time; over the autoresearch space (DEPTH has 21 values,
    ASPECT_RATIO 97, TOTAL_BATCH_SIZE two million before the power-of-two repair) that was 70 %
    of a 2 s suggestion at 100 trials. As floats they join the batched gradient ascent, and the
    space's repair rounds them (and snaps powers of two) as it does for CMA-ES. Integers with few
    values and categoricals keep Optuna's exhaustive search.

    ``failures_at_worst``: the GP sees failed trials at the worst successful value instead of the
    penalty (see :class:`FailuresAtWorst`).

    Both measured in benchmarks/RESULTS.md (speed, best value reached, failure share).
    """

    def __init__(
        self,
        *args: Any,
        relax_integers: bool = True,
        failures_at_worst: bool = True,
        max_discrete: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.relax_integers = relax_integers
        self.failures_at_worst = failures_at_worst
        self.max_discrete = max_discrete

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        inner = super().infer_relative_search_space(study, trial)
        if not self.relax_integers:
            return inner
        return {name: relax_integer(d, self.max_discrete) for name, d in inner.items()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        view = FailuresAtWorst(study) if self.failures_at_worst else study
        return super().sample_relative(view, trial, search_space)  # type: ignore[arg-type]


class FailuresAtWorst:
    """A read-only view of a study in which failed trials carry the worst successful value.

    Why: a failed trial is stored with the penalty value (100 for val_bpb near 1). The GP
    standardizes its targets, so one penalty among values that differ in the third decimal
    leaves all successful trials at nearly the same standardized value and the GP cannot tell
    them apart. Seen at the worst successful value, failures still rank last and the scale of the
    successes is kept. Only the GP's view changes; the storage keeps what was told.
    """

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        trials = self._study._get_trials(*args, **kwargs)
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        ok = [t.values[0] for t in done if not trial_failed(t)]
        if not ok:
            return trials
        minimize = self._study.direction == optuna.study.StudyDirection.MINIMIZE
        worst = max(ok) if minimize else min(ok)
        out = []
        for t in trials:
            if t.state == TrialState.COMPLETE and t.values and trial_failed(t):
                t = copy.copy(t)
                t.values = [worst]
            out.append(t)
        return out


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
    failures_at_worst: bool = True,
) -> RepairingSampler:
    """Gaussian-process BO: Optuna's GPSampler with the changes of :class:`GPSampler`.

    ``-o relax_integers=false -o failures_at_worst=false`` gives Optuna's GPSampler as it is.
    """
    base = GPSampler(
        seed=seed,
        n_startup_trials=10,
        deterministic_objective=False,
        relax_integers=relax_integers,
        failures_at_worst=failures_at_worst,
    )
    return RepairingSampler(base, space)
