"""The one interface every optimizer implements: an Optuna sampler over a :class:`SearchSpace`.

Two kinds exist:

* :class:`RepairingSampler` wraps any Optuna sampler (random, TPE, GP). It asks the wrapped
  sampler for a whole configuration, applies the space's constraints, and returns the repaired
  values as the trial's parameters, so the storage, and thus the sampler, sees what ran.
* :class:`ConfigSampler` is the base of this project's own methods (CMA-ES, the LLM methods,
  Centaur). It proposes whole configurations, learns from finished trials by reading the storage
  (so resume and many workers see the same history), and keeps its state in the study's system
  attributes so a resumed study continues exactly where it stopped.

A trial that was enqueued with fixed parameters (trial 0 = the default configuration, a re-run of
an interrupted trial, a warm start) is not proposed by the sampler; it is still observed.
"""

from __future__ import annotations

import base64
import pickle
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.space import Config, SearchSpace
from centaur_hpo.storage import study_lock

# Keys this project writes into Optuna's storage. Everything lives there, nothing beside it.
SOURCE_KEY = "centaur:source"  # trial system attr: who proposed the configuration
RERUN_KEY = "centaur:rerun_of"  # trial user attr: number of the interrupted trial re-run here
OUTCOME_KEY = "outcome"  # trial user attr: ok, oom, diverged, timeout, crash, no_metric
NOT_RUN_KEY = "centaur:not_run"  # trial system attr: the trial never ran (reason)
STATE_KEY = "centaur:sampler_state"  # study system attr prefix: pickled method state


class ProposalError(RuntimeError):
    """A method could not propose a configuration (e.g. its LLM calls failed)."""


def is_fixed(trial: FrozenTrial) -> bool:
    """True for trials enqueued with fixed parameters (not proposed by the sampler)."""
    return "fixed_params" in trial.system_attrs


def finished_trials(study: Study) -> list[FrozenTrial]:
    """Trials that ran to an outcome, in trial order; not-run placeholders are left out."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [t for t in trials if NOT_RUN_KEY not in t.system_attrs]


def trial_failed(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(OUTCOME_KEY, "ok") != "ok"


def dump_state(obj: Any) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(obj), 6)).decode()


def load_state(text: str) -> Any:
    return pickle.loads(zlib.decompress(base64.b64decode(text)))  # noqa: S301 (our own storage)


class RepairingSampler(BaseSampler):
    """Wrap an Optuna sampler so it proposes whole, constraint-repaired configurations."""

    def __init__(self, base: BaseSampler, space: SearchSpace) -> None:
        self.base = base
        self.space = space

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or is_fixed(trial):
            return {}
        inner = self.base.infer_relative_search_space(study, trial)
        params = self.base.sample_relative(study, trial, inner) if inner else {}
        for name, dist in search_space.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        study._storage.set_trial_system_attr(trial._trial_id, SOURCE_KEY, type(self.base).__name__)
        return self.space.repair(params)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, dist: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, dist)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.base.after_trial(study, trial, state, values)


class ConfigSampler(BaseSampler):
    """Base of the project's own methods: whole-configuration proposals with persistent state.

    Subclasses implement :meth:`propose` and may override :meth:`observe`. ``self.state`` is a
    picklable dict saved to the study after every change; everything a method must remember
    across a crash goes there (the ``cmaes`` optimizer object, counters, LLM history).
    """

    name = "config"
    #: Who proposed the current trial's configuration; a subclass may change it in propose()
    #: (Centaur: "llm" or "cmaes"; an LLM method falling back: "fallback:<reason>").
    source = "config"

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.state: dict[str, Any] = {"observed": [], "rng": None}
        self._fallback = RandomSampler(seed=seed)
        self._loaded: tuple[int, str] | None = None  # (study id, the state text last read/written)

    # -- to implement --------------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        """The next configuration to run (it will be repaired and recorded as run)."""
        raise NotImplementedError

    def observe(self, trial: FrozenTrial, value: float, failed: bool) -> None:
        """Learn from a finished trial. ``value`` is what the study recorded (penalty if failed)."""

    def describe(self) -> dict[str, Any]:
        """Settings worth recording with the study."""
        return {"method": self.name, "seed": self.seed}

    # -- state ---------------------------------------------------------------------------------
    def _state_key(self) -> str:
        return f"{STATE_KEY}:{self.name}"

    def load(self, study: Study) -> None:
        """Restore the study's saved state when it differs from what this object last saw.

        Why every time: with several workers, another process may have proposed or observed
        since; the storage holds the one true state (proposals run under the study lock, so
        load, propose and save never interleave between workers).
        """
        text = study._storage.get_study_system_attrs(study._study_id).get(self._state_key())
        if not text or self._loaded == (study._study_id, text):
            return
        self._loaded = (study._study_id, text)
        self.state = load_state(text)
        if self.state.get("rng") is not None:
            self.rng.bit_generator.state = self.state["rng"]

    def save(self, study: Study) -> None:
        self.state["rng"] = self.rng.bit_generator.state
        text = dump_state(self.state)
        study._storage.set_study_system_attr(study._study_id, self._state_key(), text)
        self._loaded = (study._study_id, text)

    def sync(self, study: Study) -> None:
        """Observe every finished trial not yet observed, in trial order, then save."""
        self.load(study)
        seen = set(self.state["observed"])
        new = [t for t in finished_trials(study) if t.number not in seen]
        for t in new:
            value = t.values[0] if t.values else float("nan")
            self.observe(t, value, trial_failed(t))
            self.state["observed"].append(t.number)
        if new:
            self.save(study)

    # -- Optuna's sampler interface ------------------------------------------------------------
    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        with study_lock(study._storage, study._study_id):  # re-entrant under the study loop's
            self.sync(study)
            if is_fixed(trial):
                return {}
            self.source = self.name
            config = self.space.repair(self.propose(study, trial))
            bad = self.space.validate(config)
            if bad:
                raise ProposalError(f"{self.name} proposed an invalid configuration: {bad}")
            set_source(study, trial, self.source)
            self.save(study)
            return config

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, dist: BaseDistribution
    ) -> Any:
        # Only reached for parameters outside the space (a user's own suggest_* call).
        return self._fallback.sample_independent(study, trial, param_name, dist)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Optuna calls this before the trial's state is stored, so the trial is observed at the
        # next proposal instead (sync reads the storage, which also covers other workers).
        return None


def set_source(study: Study, trial: FrozenTrial, source: str) -> None:
    study._storage.set_trial_system_attr(trial._trial_id, SOURCE_KEY, source)


def optuna_quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
