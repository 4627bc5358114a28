"""Every optimizer behind one factory: ``make_sampler(name, space, seed=...)``.

Each method is an Optuna sampler that proposes whole configurations of a
:class:`~centaur_hpo.space.SearchSpace`. Classical methods need nothing else; LLM methods and
Centaur take an LLM client (``llm=``), which defaults to the embedded local model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optuna.samplers import BaseSampler

from centaur_hpo.space import SearchSpace

CLASSICAL = ("random", "tpe", "cmaes", "gp", "smac")
LLM_METHODS = ("llm_agent", "llambo", "llm_warm_start", "code_agent", "centaur")
METHODS = CLASSICAL + LLM_METHODS

DESCRIPTIONS = {
    "random": "uniform random search (Optuna RandomSampler)",
    "tpe": "multivariate TPE with the constant liar (Optuna)",
    "cmaes": "CMA-ES with margin, categorical parameters modelled (cmaes.CatCMAwM)",
    "gp": "Gaussian-process BO (Optuna GPSampler; wide integers searched as floats)",
    "smac": "SMAC3 random-forest BO (extra: pip install 'centaur-hpo[smac]')",
    "llm_agent": "an LLM sees the space and the trial history and proposes the next configuration",
    "llambo": "LLAMBO (Liu et al. 2024): LLM candidate sampler + LLM surrogate + expected improvement",
    "llm_warm_start": "the LLM proposes the first configurations, CMA-ES refines",
    "code_agent": "the LLM edits the training script itself (unconstrained space)",
    "centaur": "CMA-ES on every trial; on a share of trials an LLM that sees CMA-ES's state proposes",
}


def make_sampler(
    name: str,
    space: SearchSpace,
    seed: int | None = None,
    *,
    failure_policy: str = "penalty",
    llm: Any = None,
    **options: Any,
) -> BaseSampler:
    """Build the sampler for ``--method name``. Unknown names get a list of the known ones."""
    constraints = failure_policy == "constraint"
    factories: dict[str, Callable[[], BaseSampler]] = {}
    from centaur_hpo.methods import classical

    factories["random"] = lambda: classical.random_sampler(space, seed)
    factories["tpe"] = lambda: classical.tpe_sampler(space, seed, constraints)
    factories["gp"] = lambda: classical.gp_sampler(space, seed, constraints, **options)

    def cmaes() -> BaseSampler:
        from centaur_hpo.methods.cmaes import CmaEsSampler

        return CmaEsSampler(space, seed, **options)

    def smac() -> BaseSampler:
        from centaur_hpo.methods.smac import SmacSampler

        return SmacSampler(space, seed, **options)

    factories["cmaes"] = cmaes
    factories["smac"] = smac
    if name in factories:
        return factories[name]()
    if name in LLM_METHODS:
        from centaur_hpo.methods.llm_factory import make_llm_sampler

        return make_llm_sampler(name, space, seed, llm=llm, **options)
    raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
