"""Centaur: CMA-ES on every trial; on an exact share of trials an LLM that sees CMA-ES's state
proposes the configuration instead (Ferreira et al. 2026), done as the paper describes it.

How one proposal is made:

1. The first ``warmup`` trials of the study (trial 0, the default, included) are CMA-ES's.
2. After that, each proposal is a *slot* in the share accounting (:class:`ShareAccount`): slot
   ``n`` goes to the alternative proposer exactly when ``floor(R_n + 1/2)`` grows, where ``R_n``
   is the sum of the shares so far (``ratio * n`` with a fixed share). So after any ``n`` slots
   the alternative has had ``round(ratio * n)`` of them, never ``n / round(1 / ratio)``.
3. CMA-ES (:class:`~centaur_hpo.methods.cmaes.CmaEsSampler`, categorical parameters modelled by
   CatCMA with margin) samples its own candidate on every slot. On a CMA-ES slot it runs; on an
   alternative slot it is shown to the LLM and dropped, never told.
4. The LLM sees the CMA-ES state in the hyperparameters' own units (rendered by
   :mod:`centaur_hpo.methods.centaur_view`): the mean as a configuration, sigma, each parameter's spread (log-scale ones as
   a factor ×/÷), the labelled correlation matrix, the categorical probabilities, CMA-ES's own
   candidate, the generation, the best and the recent trials with outcomes and failure reasons,
   the memory evidence (largest configurations that ran, smallest that ran out of memory) and,
   with ``feasibility=True``, the failure model. Every part can be switched off (``show_*``).
5. Whatever ran is told to CMA-ES when it finishes: its own sample if it ran as sampled, else the
   configuration as an injected solution with its step clipped in Mahalanobis norm.
6. A failed LLM call tells CMA-ES nothing: the state is restored to what it was before the slot
   and the :class:`~centaur_hpo.llm.base.LLMError` propagates (the study records a not-run trial
   and stops). With ``fallback=True`` CMA-ES's own candidate runs instead (source
   ``cmaes-fallback``); the slot still counts as the LLM's in the accounting.

Beyond the paper, each an option measured against the fixed scheme:

* ``adaptive=True``: the share follows which source has been producing improvements recently
  (:meth:`CentaurSampler.adaptive_share`), within ``[ratio_min, ratio_max]``;
* ``feasibility=True``: a model of where trials fail (:mod:`centaur_hpo.methods.feasibility`)
  resamples CMA-ES candidates predicted to fail and sends the LLM back once when it proposes one;
* ``proposer="random"``: the ablation - the same slots filled by a uniform random configuration,
  which separates the LLM's contribution from the mere disturbance of CMA-ES.

Everything, CMA-ES's optimizer object and its pending samples, the share accounting and the
history of the alternative slots, is in the sampler's state, saved into the study after every
proposal, so a study killed at any point resumes exactly.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import optuna.distributions as od
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.base import LLMError, Message, ParseError
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.parse import parse_config
from centaur_hpo.methods.base import (
    NOT_RUN_KEY,
    OUTCOME_KEY,
    SOURCE_KEY,
    ConfigSampler,
    dump_state,
    load_state,
)
from centaur_hpo.methods.centaur_view import RULES, STATE_PARTS, Row, StateView, mean_config
from centaur_hpo.methods.cmaes import CmaEsSampler
from centaur_hpo.methods.feasibility import FeasibilityModel, parse_outcomes
from centaur_hpo.space import Config, Param, SearchSpace

DEFAULT_TASK = "Tune the hyperparameters of a neural-network training script."

_ALT_SOURCES = ("llm", "random")
_NOT_STARTED = ("interrupted", "not_run")


def _exact(x: float) -> Fraction:
    """A share as an exact fraction (0.3 -> 3/10), so the accounting has no float drift."""
    return Fraction(str(round(float(x), 9)))


@dataclass
class ShareAccount:
    """Exact share accounting: slot ``n`` is the alternative's iff ``floor(R_n + 1/2)`` grows.

    ``R_n`` is the sum of the shares in force at slots ``1..n``; with a fixed share ``r`` the
    alternative has exactly ``floor(r * n + 1/2)`` of the first ``n`` slots, at every ``n``.
    """

    slots: int = 0
    alternative: int = 0
    target: Fraction = Fraction(0)

    def next(self, share: float) -> bool:
        self.slots += 1
        self.target += _exact(share)
        if math.floor(self.target + Fraction(1, 2)) > self.alternative:
            self.alternative += 1
            return True
        return False


def space_from_distributions(dists: Mapping[str, BaseDistribution]) -> SearchSpace:
    """A :class:`SearchSpace` from Optuna distributions, for Optuna users without a space file.

    Defaults (CMA-ES's starting mean) are the middle of each range (geometric on log scales).
    """
    params: dict[str, Param] = {}
    for name, d in dists.items():
        if isinstance(d, od.CategoricalDistribution):
            choices = tuple(d.choices)
            params[name] = Param(name, "categorical", choices=choices, default=choices[0])
        elif isinstance(d, od.IntDistribution | od.FloatDistribution):
            step = (
                d.step if isinstance(d, od.FloatDistribution) else (d.step if d.step != 1 else None)
            )
            if step is not None:
                raise ValueError(f"{name}: distributions with a step are not supported")
            lo, hi = d.low, d.high
            mid = math.sqrt(lo * hi) if d.log else (lo + hi) / 2
            kind = "int" if isinstance(d, od.IntDistribution) else "float"
            default = int(round(mid)) if kind == "int" else float(mid)
            params[name] = Param(name, kind, low=lo, high=hi, log=d.log, default=default)
        else:
            raise ValueError(f"{name}: unsupported distribution {d!r}")
    return SearchSpace(params=params)


class CentaurSampler(ConfigSampler):
    """CMA-ES + an LLM on an exact share of trials (the module doc gives the whole rule).

    ``space``: a :class:`SearchSpace` or a dict of Optuna distributions. ``llm``: an
    :class:`~centaur_hpo.llm.LLMClient`, a provider, a spec string, or None (the embedded model;
    created only when first needed). ``ratio``: the alternative proposer's share of post-warm-up
    trials. ``warmup``: trials before the first alternative slot. ``proposer``: ``"llm"`` or
    ``"random"`` (ablation). ``fallback`` (true or ``"cmaes"``): run CMA-ES's candidate when
    the LLM fails.
    ``hardware``: the limits stated to the LLM (default: from ``space.memory_cap``).
    ``show_<part>`` (see :data:`STATE_PARTS`): ablations of what the LLM sees; ``top_k`` and
    ``recent``: how many best and recent trials it sees; ``correlation``: ``"matrix"`` or
    ``"pairs"`` (only pairs with ``|r| >= 0.2``).
    """

    name = "centaur"

    def __init__(
        self,
        space: SearchSpace | Mapping[str, BaseDistribution],
        llm: Any = None,
        seed: int | None = None,
        ratio: float = 0.3,
        warmup: int = 10,
        *,
        proposer: str = "llm",
        fallback: bool | str = False,
        adaptive: bool = False,
        ratio_min: float = 0.1,
        ratio_max: float = 0.5,
        adaptive_window: int = 20,
        feasibility: bool = False,
        feasibility_on: str | tuple[str, ...] = "oom",
        feasibility_threshold: float = 0.5,
        feasibility_tries: int = 10,
        task: str = DEFAULT_TASK,
        hardware: str | None = None,
        top_k: int = 5,
        recent: int = 20,
        memory_params: list[str] | str | None = None,
        memory_k: int = 3,
        correlation: str = "matrix",
        temperature: float = 0.7,
        sigma0: float = 0.25,
        popsize: int | None = None,
        **show: bool,
    ) -> None:
        if not isinstance(space, SearchSpace):
            space = space_from_distributions(space)
        super().__init__(space, seed)
        ratio = float(ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must lie in [0, 1] (the LLM's share of trials), got {ratio}")
        if proposer not in ("llm", "random"):
            raise ValueError(f"proposer must be 'llm' or 'random', got {proposer!r}")
        if not 0.0 <= float(ratio_min) <= float(ratio_max) <= 1.0:
            raise ValueError("adaptive bounds need 0 <= ratio_min <= ratio_max <= 1")
        if correlation not in ("matrix", "pairs"):
            raise ValueError(f"correlation must be 'matrix' or 'pairs', got {correlation!r}")
        unknown = [k for k in show if not k.startswith("show_") or k[5:] not in STATE_PARTS]
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown}; the state parts are "
                + ", ".join(f"show_{p}" for p in STATE_PARTS)
            )
        self.ratio = ratio
        self.warmup = max(0, int(warmup))
        self.proposer = proposer
        # Centaur's fallback is always CMA-ES's own candidate; "cmaes" says so explicitly.
        is_cmaes = isinstance(fallback, str) and fallback.strip().lower() == "cmaes"
        self.fallback = is_cmaes or _as_bool(fallback)
        self.adaptive = _as_bool(adaptive)
        self.ratio_min, self.ratio_max = float(ratio_min), float(ratio_max)
        self.adaptive_window = max(1, int(adaptive_window))
        self.feasibility = _as_bool(feasibility)
        self.feasibility_threshold = float(feasibility_threshold)
        self.feasibility_tries = max(1, int(feasibility_tries))
        self.model = FeasibilityModel(space, parse_outcomes(feasibility_on))
        self.task = task
        if hardware is None:
            hardware = (
                f"memory is capped at {space.memory_cap}; a configuration that needs more fails "
                "with out of memory"
                if space.memory_cap
                else ""
            )
        self.hardware = hardware
        if isinstance(memory_params, str):
            memory_params = [s.strip() for s in memory_params.split(",") if s.strip()]
        self.view = StateView(
            space,
            {p: _as_bool(show.get(f"show_{p}", True)) for p in STATE_PARTS},
            top_k=max(0, int(top_k)),
            recent=max(0, int(recent)),
            correlation=correlation,
            memory_params=tuple(
                memory_params
                or [p.name for p in space if p.type == "int"]
                or [p.name for p in space if p.type == "float"]
            ),
            memory_k=max(1, int(memory_k)),
        )
        self.temperature = float(temperature)
        self._llm_spec = llm
        self._llm: Any = None
        self._lock = threading.RLock()
        self.cma = CmaEsSampler(space, seed, sigma0=sigma0, popsize=popsize)
        self.prefix = P.prefix_text(space, task, self.hardware) + "\n\n" + RULES
        self.state.update(
            cma=self.cma.state,
            account=ShareAccount(),
            slots=[],  # one entry per post-warm-up slot: trial, source, share, p_fail
            rejected=0,  # CMA-ES candidates resampled by the feasibility model
        )

    # -- set-up --------------------------------------------------------------------------------
    @property
    def llm(self) -> Any:
        if self._llm is None:
            from centaur_hpo.llm.sampling import as_client

            self._llm = as_client(self._llm_spec)
        return self._llm

    def describe(self) -> dict[str, Any]:
        out = {
            **super().describe(),
            "ratio": self.ratio,
            "warmup": self.warmup,
            "proposer": self.proposer,
            "fallback": self.fallback,
            "adaptive": self.adaptive,
            "feasibility": self.feasibility,
            "show": [p for p, on in self.view.show.items() if on],
            "top_k": self.view.top_k,
            "recent": self.view.recent,
            "temperature": self.temperature,
            "sigma0": self.cma.sigma0,
            "popsize": self.cma.optimizer.population_size,
        }
        if self.adaptive:
            out["ratio_bounds"] = [self.ratio_min, self.ratio_max]
        if self.proposer == "llm":
            out["llm"] = self.llm.describe()
        return out

    def load(self, study: Study) -> None:
        super().load(study)
        self.cma.state = self.state["cma"]  # one object graph, saved and restored together

    @property
    def account(self) -> ShareAccount:
        return self.state["account"]

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # Optuna may call from several threads (n_jobs > 1); one proposal at a time.
        with self._lock:
            return super().sample_relative(study, trial, search_space)

    def observe(self, trial: FrozenTrial, value: float, failed: bool) -> None:
        self.cma.observe(trial, value, failed)

    # -- the history -----------------------------------------------------------------------------
    def history(self, study: Study) -> list[Row]:
        """Every trial that ran to an outcome (failed ones too, whatever the failure policy)."""
        rows = []
        for t in study.get_trials(deepcopy=False):
            outcome = t.user_attrs.get(OUTCOME_KEY)
            if NOT_RUN_KEY in t.system_attrs or outcome in _NOT_STARTED:
                continue
            if t.state == TrialState.COMPLETE:
                outcome = str(outcome or "ok")
            elif t.state == TrialState.FAIL and outcome:
                outcome = str(outcome)
            else:
                continue
            if any(n not in t.params for n in self.space.names):
                continue
            value = t.values[0] if t.values and outcome == "ok" else None
            rows.append(
                Row(
                    t.number,
                    {n: t.params[n] for n in self.space.names},
                    value,
                    outcome,
                    str(t.user_attrs.get("error") or ""),
                    _source_of(t),
                )
            )
        return sorted(rows, key=lambda r: r.number)

    @staticmethod
    def started_before(study: Study, trial: FrozenTrial) -> int:
        """Trials that started before ``trial`` (interrupted and never-run ones do not count).

        Computed from the storage, so a resumed study counts as the uninterrupted one would:
        the re-run of an interrupted trial takes the interrupted trial's place.
        """
        n = 0
        for t in study.get_trials(deepcopy=False):
            if t.number >= trial.number or t.state == TrialState.WAITING:
                continue
            if NOT_RUN_KEY in t.system_attrs or t.user_attrs.get(OUTCOME_KEY) in _NOT_STARTED:
                continue
            n += 1
        return n

    # -- the share -------------------------------------------------------------------------------
    def adaptive_share(self, rows: list[Row]) -> float:
        """The alternative's share from recent improvements of each source.

        An improvement is a successful trial better than every earlier one (by trial number).
        For each source, over its last ``adaptive_window`` trials, ``p = (improvements + 1) /
        (trials + 2)``; the share is ``r p_alt / (r p_alt + (1 - r) p_cmaes)`` with ``r`` the
        base ratio (so equal success keeps the base ratio), clipped to the bounds.
        """
        best: float | None = None
        flags: dict[str, list[bool]] = {"alt": [], "cmaes": []}
        for row in rows:
            improved = False
            if row.ok:
                assert row.value is not None
                improved = best is None or self.space.worse(best, row.value)
                if improved:
                    best = row.value
            if row.source in _ALT_SOURCES:
                flags["alt"].append(improved)
            elif row.source.startswith("cmaes"):
                flags["cmaes"].append(improved)
        p = {}
        for k, f in flags.items():
            recent = f[-self.adaptive_window :]
            p[k] = (sum(recent) + 1) / (len(recent) + 2)
        r = self.ratio
        denom = r * p["alt"] + (1 - r) * p["cmaes"]
        share = r * p["alt"] / denom if denom > 0 else r
        return min(self.ratio_max, max(self.ratio_min, share))

    # -- proposals -------------------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        rows: list[Row] | None = None
        if self.feasibility or self.adaptive:
            rows = self.history(study)
        if self.feasibility:
            assert rows is not None
            self.model.fit((r.config, r.outcome) for r in rows)
        if self.started_before(study, trial) < self.warmup:
            return self._cma_slot(trial, None)
        snapshot = None
        if self.proposer == "llm" and not self.fallback:
            snapshot = dump_state({**self.state, "rng": self.rng.bit_generator.state})
        share = self.adaptive_share(rows or []) if self.adaptive else self.ratio
        if not self.account.next(share):
            return self._cma_slot(trial, share)
        sol, candidate = self._cma_candidate()
        slot: dict[str, Any] = {
            "trial": trial.number,
            "slot": self.account.slots,
            "share": share,
        }
        if self.proposer == "random":
            config = self._random_config()
            self.source = "random"
        else:
            try:
                config = self._ask_llm(study, trial, candidate, rows)
                self.source = "llm"
            except LLMError as e:
                if snapshot is not None:
                    self._restore(snapshot)
                    raise
                self.cma.state["pending"][trial.number] = sol
                self.source = "cmaes-fallback"
                slot["error"] = str(e)[:500]
                study._storage.set_trial_system_attr(
                    trial._trial_id, "centaur:fallback_error", str(e)[:1000]
                )
                config = candidate
        slot["source"] = self.source
        if self.model.active:
            slot["p_fail"] = self.model.p_fail(self.space.repair(config))
        self.state["slots"].append(slot)
        return config

    def _restore(self, snapshot: str) -> None:
        """Undo everything a failed slot changed (CMA-ES's draw, the accounting)."""
        state = load_state(snapshot)
        self.rng.bit_generator.state = state["rng"]
        self.state = state
        self.cma.state = state["cma"]

    def _cma_slot(self, trial: FrozenTrial, share: float | None) -> Config:
        sol, config = self._cma_candidate()
        self.cma.state["pending"][trial.number] = sol
        self.source = "cmaes"
        if share is not None:
            self.state["slots"].append(
                {
                    "trial": trial.number,
                    "slot": self.account.slots,
                    "share": share,
                    "source": "cmaes",
                }
            )
        return config

    def _cma_candidate(self) -> tuple[Any, Config]:
        """CMA-ES's next sample; with the feasibility model, resampled away from predicted failures.

        Rejected samples are dropped, never told (resampling is the classic way an evolution
        strategy handles a constraint it can evaluate cheaply).
        """
        best: tuple[float, Any, Config] | None = None
        tries = self.feasibility_tries if self.model.active and self.feasibility else 1
        for _ in range(tries):
            sol = self.cma.ask_solution()
            config = self.cma.decode_solution(sol)
            if tries == 1:
                return sol, config
            p = self.model.p_fail(self.space.repair(config))
            assert p is not None
            if best is None or p < best[0]:
                best = (p, sol, config)
            if p < self.feasibility_threshold:
                break
            self.state["rejected"] += 1
        assert best is not None
        return best[1], best[2]

    def _random_config(self) -> Config:
        from centaur_hpo.llm.sampling import sample_uniform

        best: tuple[float, Config] | None = None
        tries = self.feasibility_tries if self.model.active and self.feasibility else 1
        for _ in range(tries):
            config = sample_uniform(self.space, self.rng)
            p = self.model.p_fail(config) if tries > 1 else 0.0
            assert p is not None
            if best is None or p < best[0]:
                best = (p, config)
            if p < self.feasibility_threshold:
                break
        assert best is not None
        return best[1]

    # -- the LLM ---------------------------------------------------------------------------------
    def _ask_llm(
        self, study: Study, trial: FrozenTrial, candidate: Config, rows: list[Row] | None
    ) -> Config:
        if rows is None:
            rows = self.history(study)
        msgs = self.build_messages(rows, candidate, self._running(study, trial))
        warned: set[str] = set()
        model = self.model if self.feasibility and self.model.active else None

        def parse(text: str) -> tuple[Config, list[str]]:
            config, notes = parse_config(text, self.space)
            if model is not None:
                p = model.p_fail(self.space.repair(config))
                key = json.dumps(config, sort_keys=True, default=str)
                if p is not None and p >= self.feasibility_threshold:
                    if key not in warned and not warned:
                        warned.add(key)
                        raise ParseError(
                            f"the failure model predicts this configuration fails with "
                            f"probability {p:.2f} ({model.describe()}); propose one it expects "
                            "to run"
                        )
                    notes.append(f"predicted to fail (p={p:.2f}); accepted after one re-ask")
            return config, notes

        return self.llm.ask(
            msgs,
            parse,
            constraint=config_constraint(self.space),
            study=study,
            trial=trial,
            method=self.name,
            purpose="propose",
            temperature=self.temperature,
            # The slot index, not the trial number: a resumed study numbers its trials
            # differently after a re-run, and must still ask the same question the same way.
            seed=(int(self.seed or 0) * 1_000_003 + self.account.slots) % (2**31),
        )

    def _running(self, study: Study, trial: FrozenTrial) -> list[Config]:
        """Configurations running now (other workers of a batch), so the LLM does not repeat them."""
        out = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number != trial.number and all(n in t.params for n in self.space.names):
                out.append({n: t.params[n] for n in self.space.names})
        return out

    def build_messages(
        self, rows: list[Row], candidate: Config, running: list[Config] | None = None
    ) -> list[Message]:
        """The prompt, fitted to the model's context by dropping history rows (oldest first)."""
        state = self.state_text(candidate)
        top, recent = self.view.window(rows)
        items = [("top", r) for r in top] + [("recent", r) for r in recent]
        drop = [len(top) + i for i in range(len(recent))] + list(range(len(top) - 1, -1, -1))
        memory = self.view.memory_text(rows)

        def build(kept: list[tuple[str, Row]]) -> list[Message]:
            t = [r for tag, r in kept if tag == "top"]
            rr = [r for tag, r in kept if tag == "recent"]
            body = self.view.body(state, t, rr, memory, running or [], len(rows))
            return P.messages(self.prefix, body)

        budget = (
            self.llm.context_window
            - self.llm.reply_budget(config_constraint(self.space))
            - P.PROMPT_MARGIN
        )
        msgs, _ = P.fit_rows(items, drop, build, self.llm.count_tokens, budget)
        return msgs

    def state_text(self, candidate: Config | None = None) -> str:
        """CMA-ES's state as the LLM reads it (parts switched off by ``show_*`` are left out)."""
        summary = self.cma.summary()
        feasibility = None
        if self.feasibility:
            feasibility = f"Failure model: {self.model.describe()}."
            if self.model.active and candidate is not None:
                p = self.model.p_fail(self.space.repair(candidate))
                feasibility += f" Predicted failure probability of CMA-ES's proposal: {p:.2f}."
        return self.view.state_text(summary, self.mean_config(summary), candidate, feasibility)

    def mean_config(self, summary: dict[str, Any] | None = None) -> Config:
        """CMA-ES's mean as a configuration (categoricals at their most likely choice)."""
        return mean_config(self.space, summary or self.cma.summary(), self.cma.enc.const)

    def memory_text(self, rows: list[Row]) -> str:
        return self.view.memory_text(rows)

    # -- reporting --------------------------------------------------------------------------------
    def share_report(self) -> dict[str, Any]:
        """The accounting as it stands: slots, alternative slots, and each source's count."""
        counts: dict[str, int] = {}
        for s in self.state["slots"]:
            counts[s["source"]] = counts.get(s["source"], 0) + 1
        a = self.account
        return {
            "slots": a.slots,
            "alternative": a.alternative,
            "share": a.alternative / a.slots if a.slots else None,
            "by_source": counts,
            "rejected_by_feasibility": self.state["rejected"],
        }


def _source_of(t: FrozenTrial) -> str:
    return str(t.system_attrs.get(SOURCE_KEY) or t.user_attrs.get("source") or "unknown")


def _as_bool(v: Any) -> bool:
    """Options arrive from ``-o key=value``: accept true/false/1/0/yes/no as text too."""
    if isinstance(v, str):
        low = v.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected true or false, got {v!r}")
    return bool(v)


def make_centaur_sampler(
    space: SearchSpace, seed: int | None = None, *, llm: Any = None, **options: Any
) -> CentaurSampler:
    """The sampler for ``centaur tune --method centaur`` (options from ``-o key=value``)."""
    return CentaurSampler(space, llm=llm, seed=seed, **options)
