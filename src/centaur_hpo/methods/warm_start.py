"""LLM warm start: the LLM proposes the first configurations, a classical sampler refines.

The LLM is asked once for ``n_warm`` distinct configurations (``{"configs": [...]}``, best guess
first; with ``one_call=False`` it is asked ``n_warm`` times for one each). They run as the first
``n_warm`` proposals (source ``llm``). Then the refiner takes over (source = its name):

* ``"cmaes"`` (default): :class:`~centaur_hpo.methods.cmaes.CmaEsSampler` started at ``x0`` = the
  best configuration the warm start produced that ran successfully (the LLM's first guess if none
  did yet). With ``ask_bounds=True`` the LLM is also asked for a narrower ``[low, high]`` per
  numeric parameter, which sets CMA-ES's initial step size: the median width of those bounds in
  the unit (log-warped) space divided by 4, clipped to [0.05, 0.3]. Bounds shape the start, they
  do not cut the space, so CMA-ES can still leave a box the LLM got wrong.
* ``"tpe"``: Optuna's multivariate TPE, which learns from the warm-start trials like any other.
* or any :class:`ConfigSampler` / Optuna sampler instance.

If the LLM fails, the method raises :class:`ProposalError` unless ``fallback`` is given: a sampler,
or ``"refiner"`` to go straight to the refiner (source ``fallback:<reason>``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.base import LLMCallFailed, LLMError
from centaur_hpo.llm.sampling import as_client, propose_with, reason_tag, sampler_name, settle
from centaur_hpo.methods.base import ConfigSampler
from centaur_hpo.space import Config, SearchSpace

DEFAULT_TASK = "Tune the hyperparameters of a neural-network training script."


class LLMWarmStartSampler(ConfigSampler):
    """The first ``n_warm`` configurations from the LLM, then a classical refiner (module doc)."""

    name = "llm_warm_start"

    def __init__(
        self,
        space: SearchSpace,
        llm: Any = None,
        seed: int | None = 0,
        *,
        n_warm: int = 5,
        task: str = DEFAULT_TASK,
        hardware: str = "",
        refiner: Any = "cmaes",
        ask_bounds: bool = False,
        one_call: bool = True,
        fallback: Any = None,
        temperature: float = 0.7,
    ) -> None:
        super().__init__(space, seed)
        self.llm = as_client(llm)
        self.n_warm = max(0, n_warm)
        self.task = task
        self.hardware = hardware
        self.refiner_spec = refiner
        self.ask_bounds = ask_bounds
        self.one_call = one_call
        self.fallback = fallback
        self.temperature = temperature
        self.prefix = P.prefix_text(space, task, hardware)
        self._refiner: Any = None
        self.state.update(
            asked=False, queue=[], n_llm=0, x0=None, sigma0=None, bounds=None, llm_trials=[]
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "llm": self.llm.describe(),
            "n_warm": self.n_warm,
            "refiner": self.refiner_spec
            if isinstance(self.refiner_spec, str)
            else sampler_name(self.refiner_spec),
            "ask_bounds": self.ask_bounds,
        }

    # -- the LLM part --------------------------------------------------------------------------
    def warm_messages(self, n: int) -> list[dict[str, str]]:
        what = (
            f"Propose {n} different configurations to run first, your best guess first, spread "
            "so that together they are informative. Reply as "
            '{"configs": [{...}, {...}]}, each configuration one JSON object with every parameter.'
            if n > 1
            else "Propose the configuration you expect to work best. Reply with one JSON object."
        )
        return P.messages(self.prefix, "No trial has run yet.\n\n" + what)

    def bounds_messages(self) -> list[dict[str, str]]:
        return P.messages(
            self.prefix,
            "Before any trial runs: for each numeric parameter, give the narrower range [low, high] "
            "where you expect the best configurations to lie. Reply as one JSON object mapping each "
            "numeric parameter to [low, high].",
        )

    def _ask_llm(self, study: Study, trial: FrozenTrial) -> None:
        kw = {"study": study, "trial": trial, "method": self.name, "temperature": self.temperature}
        configs: list[Config] = []
        if self.one_call or self.n_warm <= 1:
            configs = (
                self.llm.ask_configs(
                    self.warm_messages(self.n_warm),
                    self.space,
                    self.n_warm,
                    purpose="warm_start",
                    seed=int(self.seed or 0),
                    **kw,
                )
                if self.n_warm > 1
                else [
                    self.llm.ask_config(
                        self.warm_messages(1),
                        self.space,
                        purpose="warm_start",
                        seed=int(self.seed or 0),
                        **kw,
                    )[0]
                ]
            )
        else:
            for k in range(self.n_warm):
                try:
                    c, _ = self.llm.ask_config(
                        self.warm_messages(1),
                        self.space,
                        purpose="warm_start",
                        seed=int(self.seed or 0) + 7919 * k,
                        **kw,
                    )
                except LLMCallFailed:
                    continue
                if c not in configs:
                    configs.append(c)
            if not configs:
                raise LLMCallFailed("the LLM gave no valid warm-start configuration")
        self.state["queue"] = configs
        if self.ask_bounds:
            bounds = self.llm.ask_bounds(
                self.bounds_messages(), self.space, purpose="bounds", seed=int(self.seed or 0), **kw
            )
            self.state["bounds"] = {k: list(v) for k, v in bounds.items()}
            self.state["sigma0"] = self._sigma_from_bounds(bounds)

    def _sigma_from_bounds(self, bounds: dict[str, tuple[float, float]]) -> float:
        widths = []
        for name, (lo, hi) in bounds.items():
            p = self.space.params[name]
            if p.log and lo <= 0:
                continue
            widths.append(abs(self.space.to_unit(name, hi) - self.space.to_unit(name, lo)))
        if not widths:
            return 0.25
        return float(np.clip(np.median(widths) / 4.0, 0.05, 0.3))

    # -- the refiner ---------------------------------------------------------------------------
    def refiner(self, study: Study) -> Any:
        """The classical sampler that refines after the warm start (built once, x0 recorded)."""
        if self._refiner is not None:
            return self._refiner
        spec = self.refiner_spec
        if isinstance(spec, str):
            if spec == "cmaes":
                from centaur_hpo.methods.cmaes import CmaEsSampler

                if self.state["x0"] is None:
                    self.state["x0"] = self._best_guess(study)
                sigma0 = self.state["sigma0"] or 0.25
                self._refiner = CmaEsSampler(
                    self.space, self.seed, x0=self.state["x0"], sigma0=sigma0
                )
            elif spec == "tpe":
                from centaur_hpo.methods.classical import tpe_sampler

                self._refiner = tpe_sampler(self.space, self.seed)
            else:
                raise ValueError(f"refiner {spec!r}: use 'cmaes', 'tpe' or a sampler instance")
        else:
            self._refiner = spec
        return self._refiner

    def _best_guess(self, study: Study) -> Config:
        llm_trials = set(self.state["llm_trials"])
        obs = [o for o in P.observations(study, self.space) if o.ok and o.number in llm_trials]
        if obs:
            sign = 1.0 if self.space.direction == "minimize" else -1.0
            return dict(min(obs, key=lambda o: sign * float(o.value)).config)  # type: ignore[arg-type]
        if self.state["queue"]:
            return dict(self.state["queue"][0])
        first = self.state.get("first_llm_config")
        return dict(first) if first else self.space.default_config()

    # -- proposals -----------------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        if self.state["n_llm"] < self.n_warm:
            if not self.state["asked"]:
                try:
                    settle(
                        self.llm, lambda: self._ask_llm(study, trial), retry=self.fallback is None
                    )
                except LLMError as e:
                    if self.fallback is None:
                        raise
                    self.state["asked"] = True
                    self.state["queue"] = []
                    return self._propose_fallback(e, study, trial)
                self.state["asked"] = True
                if self.state["queue"]:
                    self.state["first_llm_config"] = dict(self.state["queue"][0])
            if self.state["queue"]:
                config = self.state["queue"].pop(0)
                self.state["n_llm"] += 1
                self.state["llm_trials"].append(trial.number)
                self.source = "llm"
                return config
        refiner = self.refiner(study)
        config = propose_with(refiner, study, trial, self.space)
        self.source = sampler_name(refiner)
        return config

    def _propose_fallback(self, error: LLMError, study: Study, trial: FrozenTrial) -> Config:
        sampler = self.refiner(study) if self.fallback == "refiner" else self.fallback
        config = propose_with(sampler, study, trial, self.space)
        self.source = f"fallback:{reason_tag(error)}"
        study._storage.set_trial_system_attr(
            trial._trial_id, "centaur:fallback_error", str(error)[:1000]
        )
        return config
