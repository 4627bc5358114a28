"""Helpers the LLM methods share: building the client, uniform sampling, asking another sampler.

Kept here (not in each method) so the three LLM methods treat fallbacks and sources alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.llm.base import LLMCallFailed
from centaur_hpo.llm.client import LLMClient, make_client
from centaur_hpo.methods.base import ConfigSampler
from centaur_hpo.space import Config, SearchSpace

T = TypeVar("T")


def settle(client: LLMClient, ask: Callable[[], T], *, retry: bool = True) -> T:
    """``ask()`` again after each failed call until one succeeds or the LLM is unavailable.

    Why: a trial must not be spent (or the study stopped) on one failed call; the client's own
    rule - :class:`~centaur_hpo.llm.LLMUnavailable` after ``max_failed_calls`` consecutive
    failed calls - decides when to give up, and its message names the endpoint. With
    ``retry=False`` (an opt-in fallback is configured) the first failure is raised at once so
    the trial falls back. The loop is bounded even if ``ask`` fails without using the client.
    """
    for _ in range(max(1, client.max_failed_calls) - 1 if retry else 0):
        try:
            return ask()
        except LLMCallFailed:
            continue
    return ask()


def as_client(llm: Any) -> LLMClient:
    """``llm`` as a client: a client, a provider, a spec string, or None (the default model)."""
    return make_client(llm)


def sample_uniform(space: SearchSpace, rng: np.random.Generator) -> Config:
    """A configuration drawn uniformly (log-uniformly on log scales), then repaired."""
    config: Config = {}
    for p in space:
        values = p.values()
        if values is not None:
            config[p.name] = values[int(rng.integers(len(values)))]
            continue
        value = space.from_unit(p.name, float(rng.random()))
        config[p.name] = int(round(value)) if p.type == "int" else value
    return space.repair(config)


def sampler_name(sampler: Any) -> str:
    if isinstance(sampler, ConfigSampler):
        return sampler.name
    base = getattr(sampler, "base", sampler)
    return type(base).__name__.removesuffix("Sampler").lower() or "sampler"


def propose_with(sampler: Any, study: Study, trial: FrozenTrial, space: SearchSpace) -> Config:
    """A whole configuration from another sampler (one of ours, or any Optuna sampler).

    A :class:`ConfigSampler` syncs and saves its own state (under its own key), so it learns from
    every finished trial, including the LLM's.
    """
    if isinstance(sampler, ConfigSampler):
        sampler.sync(study)
        config = sampler.propose(study, trial)
        sampler.save(study)
        return space.repair(config)
    if isinstance(sampler, BaseSampler):
        dists = space.distributions()
        inner = sampler.infer_relative_search_space(study, trial)
        params = dict(sampler.sample_relative(study, trial, inner) if inner else {})
        for name, dist in dists.items():
            if name not in params:
                params[name] = sampler.sample_independent(study, trial, name, dist)
        return space.repair({n: params[n] for n in space.names})
    raise TypeError(f"cannot propose with {sampler!r}: expected a ConfigSampler or Optuna sampler")


def reason_tag(error: BaseException) -> str:
    """A short tag for a trial's source: ``unavailable``, ``call_failed``, ``invalid``..."""
    name = type(error).__name__
    tag = {"LLMUnavailable": "unavailable", "LLMCallFailed": "call_failed"}.get(name)
    return tag or re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def fallback_propose(
    owner: ConfigSampler, fallback: Any, error: BaseException, study: Study, trial: FrozenTrial
) -> Config:
    """Propose with the opt-in fallback; the trial's source becomes ``fallback:<reason>``.

    The source is set on ``owner`` (the LLM method), which the study records after the proposal,
    and the LLM's error is kept on the trial so a reader sees why it fell back.
    """
    config = propose_with(fallback, study, trial, owner.space)
    owner.source = f"fallback:{reason_tag(error)}"
    study._storage.set_trial_system_attr(
        trial._trial_id, "centaur:fallback_error", str(error)[:1000]
    )
    return config
