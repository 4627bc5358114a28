"""LLAMBO (Liu, Astorga, Seedat, van der Schaar, ICLR 2024), paper-faithful, with failures shown.

One trial:

1. **Warm start** - the first ``n_initial`` proposals are uniform random configurations (the
   paper's initial design), and random proposals continue while no trial has succeeded.
2. **Candidate sampler** - the LLM is shown the observed configurations with their scores and
   asked for a configuration expected to reach a *target* score. The target follows the paper:
   ``target = best - alpha * (worst - best)`` for minimisation (``best + alpha * (best - worst)``
   mirrored for maximisation), i.e. ``alpha`` times the observed range beyond the best; the
   authors' recommended ``alpha = -0.2`` puts the target slightly inside the observed range.
   ``n_candidates`` calls, each with its own shuffle of the examples and sampling seed;
   candidates equal to an evaluated configuration or to each other are dropped, each earning
   one extra call (at most two); if every candidate repeats, a repeat is used.
3. **Discriminative surrogate** - ``n_surrogate`` calls, each with a differently shuffled set of
   few-shot examples (config -> score), predict the score of every candidate; per candidate the
   mean and standard deviation over these samples are the surrogate's prediction (std floored at
   ``1e-5 * observed range``). One candidate needs no surrogate call.
4. **Expected improvement** over the best observed score picks the candidate.

Differences from the paper, and why: failed trials are *visible* in both prompts as
``FAILED (outcome: reason)`` instead of being hidden or given the penalty score (which would
stretch the observed range), and they are excluded from best/worst; the surrogate predicts all
candidates of one trial in one call (``{"scores": [...]}``) to keep calls few on a CPU model;
replies are constrained by a grammar built from the space.

Prompt window rule: the ``n_best`` best successful trials, a stratified sample of ``n_spread``
further successes (evenly spaced by rank, so the whole score range is represented) and the
``n_failed`` most recent failures; if the prompt exceeds the context minus the reply budget, the
stratified rows go first, then the oldest failures, then the weakest best rows. So a late-run
prompt never outgrows the context (the reference implementation's prompts grew without bound).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.base import LLMCallFailed, LLMError, Message
from centaur_hpo.llm.grammar import config_constraint, scores_constraint
from centaur_hpo.llm.sampling import as_client, fallback_propose, sample_uniform, settle
from centaur_hpo.methods.base import ConfigSampler, ProposalError
from centaur_hpo.space import Config, SearchSpace

DEFAULT_TASK = "Tune the hyperparameters of a neural-network training script."
DECISION_KEY = "centaur:llambo"


def expected_improvement(
    best: float, mean: np.ndarray, std: np.ndarray, minimize: bool
) -> np.ndarray:
    """EI of each candidate over ``best`` under a normal prediction ``N(mean, std**2)``."""
    delta = (best - mean) if minimize else (mean - best)
    z = delta / std
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2.0 * math.pi)
    return delta * cdf + std * pdf


class LlamboSampler(ConfigSampler):
    """LLAMBO: LLM candidate sampler + LLM surrogate + expected improvement (see module doc).

    LLM calls per trial after the warm start: ``n_candidates`` (+ up to 2 for repeats) plus
    ``n_surrogate`` (none with a single candidate). The defaults (3 + 2) keep a trial to a few
    calls, since the embedded model takes seconds per call; the paper used more.
    """

    name = "llambo"

    def __init__(
        self,
        space: SearchSpace,
        llm: Any = None,
        seed: int | None = 0,
        *,
        task: str = DEFAULT_TASK,
        hardware: str = "",
        n_initial: int = 5,
        n_candidates: int = 3,
        n_surrogate: int = 2,
        alpha: float = -0.2,
        n_best: int = 8,
        n_spread: int = 8,
        n_failed: int = 4,
        candidate_temperature: float = 0.8,
        surrogate_temperature: float = 0.7,
        fallback: Any = None,
    ) -> None:
        super().__init__(space, seed)
        if not -1.0 <= alpha <= 1.0:
            raise ValueError("alpha must lie in [-1, 1] (the paper's range)")
        if n_candidates < 1:
            raise ValueError("n_candidates must be at least 1")
        self.llm = as_client(llm)
        self.task = task
        self.hardware = hardware
        self.n_initial = n_initial
        self.n_candidates = n_candidates
        self.n_surrogate = max(1, n_surrogate)
        self.alpha = alpha
        self.n_best = n_best
        self.n_spread = n_spread
        self.n_failed = n_failed
        self.candidate_temperature = candidate_temperature
        self.surrogate_temperature = surrogate_temperature
        self.fallback = fallback
        self.prefix = P.prefix_text(space, task, hardware)
        self.state.update(n_random=0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "llm": self.llm.describe(),
            "n_initial": self.n_initial,
            "n_candidates": self.n_candidates,
            "n_surrogate": self.n_surrogate,
            "alpha": self.alpha,
        }

    # -- pieces --------------------------------------------------------------------------------
    @property
    def minimize(self) -> bool:
        return self.space.direction == "minimize"

    def target(self, values: list[float]) -> tuple[float, float, float, float]:
        """``(target, best, worst, range)`` of the successful scores (rule in the module doc)."""
        best = min(values) if self.minimize else max(values)
        worst = max(values) if self.minimize else min(values)
        spread = abs(worst - best)
        if spread == 0:
            spread = 0.1 * abs(best) or 0.1
        target = best - self.alpha * spread if self.minimize else best + self.alpha * spread
        return target, best, worst, spread

    def window(self, obs: list[P.Observation]) -> tuple[list[P.Observation], list[int]]:
        """Rows to show and the order to drop them in (rule in the module doc)."""
        sign = 1.0 if self.minimize else -1.0
        ok = sorted((o for o in obs if o.ok), key=lambda o: (sign * float(o.value), o.number))  # type: ignore[arg-type]
        best = ok[: self.n_best]
        spread = P.stratified(ok[self.n_best :], self.n_spread)
        failed = [o for o in obs if not o.ok][-self.n_failed :] if self.n_failed > 0 else []
        rows = best + spread + failed
        nb, ns = len(best), len(spread)
        drop = (
            list(range(nb + ns - 1, nb - 1, -1))
            + list(range(nb + ns, len(rows)))
            + list(range(nb - 1, -1, -1))
        )
        return rows, drop

    def _examples(self, rows: list[P.Observation], shuffle_seed: int, decimals: int) -> str:
        order = np.random.default_rng(shuffle_seed).permutation(len(rows))
        lines = [
            f"{P.render_config(self.space, rows[i].config)} -> "
            f"{P.result_text(self.space, rows[i], decimals)}"
            for i in order
        ]
        return "Evaluated configurations (in random order):\n" + ("\n".join(lines) or "(none)")

    def _fit(self, obs: list[P.Observation], body: Any, reply_budget: int) -> list[Message]:
        rows, drop = self.window(obs)
        budget = self.llm.context_window - reply_budget - P.PROMPT_MARGIN

        def build(kept: list[P.Observation]) -> list[Message]:
            return P.messages(self.prefix, body(kept))

        msgs, _ = P.fit_rows(rows, drop, build, self.llm.count_tokens, budget)
        return msgs

    def candidate_messages(
        self, obs: list[P.Observation], target: float, decimals: int, shuffle_seed: int
    ) -> list[Message]:
        metric = self.space.metric

        def body(kept: list[P.Observation]) -> str:
            return (
                self._examples(kept, shuffle_seed, decimals)
                + f"\n\nRecommend one new configuration that you expect to reach {metric} = "
                f"{target:.{decimals}f}. Do not repeat an evaluated configuration, avoid ones like "
                "those that failed, and do not put values at the edges of the ranges. Reply with "
                "the configuration as one JSON object."
            )

        return self._fit(obs, body, self.llm.reply_budget(config_constraint(self.space)))

    def surrogate_messages(
        self,
        obs: list[P.Observation],
        candidates: list[Config],
        decimals: int,
        shuffle_seed: int,
        reply_budget: int,
    ) -> list[Message]:
        metric = self.space.metric
        listed = "\n".join(
            f"candidate {i + 1}: {P.render_config(self.space, c)}" for i, c in enumerate(candidates)
        )

        def body(kept: list[P.Observation]) -> str:
            return (
                self._examples(kept, shuffle_seed, decimals)
                + f"\n\nPredict the {metric} each of these {len(candidates)} new configurations "
                f"will reach if it runs:\n{listed}\n"
                f'Reply as {{"scores": [...]}} with {len(candidates)} numbers, one per candidate, '
                "in the order listed."
            )

        return self._fit(obs, body, reply_budget)

    def _seed(self, trial: FrozenTrial, k: int) -> int:
        return (int(self.seed or 0) * 1_000_003 + trial.number * 101 + k) % (2**31)

    # -- the proposal --------------------------------------------------------------------------
    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        obs = P.observations(study, self.space)
        ok_values = [float(o.value) for o in obs if o.ok]  # type: ignore[arg-type]
        if self.state["n_random"] < self.n_initial or not ok_values:
            self.state["n_random"] += 1
            self.source = "random"
            return sample_uniform(self.space, self.rng)
        try:
            return settle(
                self.llm,
                lambda: self._propose_llm(study, trial, obs, ok_values),
                retry=self.fallback is None,
            )
        except LLMError as e:
            if self.fallback is None:
                raise
            return fallback_propose(self, self.fallback, e, study, trial)

    def _propose_llm(
        self, study: Study, trial: FrozenTrial, obs: list[P.Observation], values: list[float]
    ) -> Config:
        target, best, worst, spread = self.target(values)
        decimals = min(8, max(1, math.ceil(-math.log10(spread / 1000))))
        seen = {P.render_config(self.space, o.config) for o in obs}
        kw = {"study": study, "trial": trial, "method": self.name}

        candidates: list[Config] = []
        repeats: list[Config] = []
        failures: list[str] = []
        calls = 0
        # Each repeated candidate earns one extra call, at most two in all.
        while len(candidates) < self.n_candidates and calls < self.n_candidates + min(
            2, len(repeats)
        ):
            msgs = self.candidate_messages(obs, target, decimals, self._seed(trial, calls))
            try:
                config, _notes = self.llm.ask_config(
                    msgs,
                    self.space,
                    purpose="candidate",
                    temperature=self.candidate_temperature,
                    seed=self._seed(trial, calls),
                    **kw,
                )
            except LLMCallFailed as e:
                failures.append(str(e))
                calls += 1
                continue
            calls += 1
            key = P.render_config(self.space, config)
            if key in seen:
                repeats.append(config)
                continue
            seen.add(key)
            candidates.append(config)
        note = ""
        if not candidates:
            if not repeats:
                raise LLMCallFailed(
                    "LLAMBO got no candidate from the LLM: " + "; ".join(failures[-2:])
                )
            candidates = [repeats[0]]
            note = "every candidate repeated an evaluated configuration; re-running one"

        lo = (best - spread) if self.minimize else (worst - spread)
        hi = (worst + spread) if self.minimize else (best + spread)
        preds: list[list[float]] = []
        if len(candidates) > 1:
            n = len(candidates)
            reply_budget = self.llm.reply_budget(scores_constraint(n, lo, hi, decimals))
            for j in range(self.n_surrogate):
                msgs = self.surrogate_messages(
                    obs, candidates, decimals, self._seed(trial, 50 + j), reply_budget
                )
                try:
                    preds.append(
                        self.llm.ask_scores(
                            msgs,
                            n,
                            lo,
                            hi,
                            decimals,
                            purpose="surrogate",
                            temperature=self.surrogate_temperature,
                            seed=self._seed(trial, 50 + j),
                            **kw,
                        )
                    )
                except LLMCallFailed as e:
                    failures.append(str(e))
        if preds:
            arr = np.array(preds, dtype=float)
            mean = arr.mean(axis=0)
            std = np.maximum(arr.std(axis=0), 1e-5 * spread)
            ei = expected_improvement(best, mean, std, self.minimize)
            chosen = int(np.argmax(ei))
        else:
            mean = std = ei = np.full(len(candidates), np.nan)
            chosen = 0
            if len(candidates) > 1:
                note = "the surrogate gave no prediction; took the first candidate"
        decision = {
            "target": target,
            "best": best,
            "alpha": self.alpha,
            "candidates": candidates,
            "mean": _floats(mean),
            "std": _floats(std),
            "ei": _floats(ei),
            "chosen": chosen,
            "surrogate_samples": len(preds),
            "note": note,
            "failed_calls": failures,
        }
        study._storage.set_trial_system_attr(
            trial._trial_id, DECISION_KEY, json.loads(json.dumps(decision))
        )
        self.source = "llm"
        config = candidates[chosen]
        if self.space.validate(config):
            raise ProposalError(
                f"LLAMBO chose an invalid configuration: {self.space.validate(config)}"
            )
        return config


def _floats(a: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(float(x)) else float(x) for x in a]
