"""The paper's "Karpathy Agent (14 HPs)", done right: an LLM sees the space and the history and
returns the next configuration.

What it fixes against the reference code: the prompt states the real hardware limits given by the
caller (the reference told the model the wrong GPU memory); failed trials are shown as failures
with their reason, not as a penalty score; the reply is constrained to the space (grammar or
schema) and validated - ints rounded, an invalid choice rejected, never run under another name;
the prompt keeps a fixed prefix for the prompt cache and a bounded history, so it never outgrows
the context; a failed LLM call never becomes a trial (it raises :class:`ProposalError`, or uses
the opt-in ``fallback`` and records the source ``fallback:<reason>``).

History window rule: the ``n_best`` best successful trials (best first), then the most recent
trials not shown yet, up to ``history`` rows in all; if the prompt then exceeds the model's
context minus the reply budget, the oldest recent rows go first, then the weakest best rows.
"""

from __future__ import annotations

from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.base import LLMError, Message, ParseError
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.parse import parse_config
from centaur_hpo.llm.sampling import as_client, fallback_propose, settle
from centaur_hpo.methods.base import ConfigSampler
from centaur_hpo.space import Config, SearchSpace

DEFAULT_TASK = "Tune the hyperparameters of a neural-network training script."

RULES = """Rules:
- Reply with one JSON object that gives every parameter above a value, in the order listed.
- Integers as integers, floats as decimals, choices exactly as listed; stay inside the ranges.
- Learn from the history: move towards what worked, away from what failed, and do not repeat a \
configuration that already ran."""


class LLMAgentSampler(ConfigSampler):
    """An LLM proposes each configuration from the search space and the trial history.

    ``llm``: an :class:`~centaur_hpo.llm.LLMClient`, a provider, a spec string, or None (the
    embedded model). ``task`` and ``hardware`` are stated verbatim in the prompt (``hardware`` is
    where the caller says e.g. "memory cap 3 GiB (address-space limit)"). ``history`` bounds the
    rows shown, ``n_best`` of them the best trials (default a third). ``fallback``: an optional
    sampler used when the LLM fails (opt-in). ``avoid_repeats``: a reply that repeats a configuration
    that already ran is re-asked once, then accepted.
    """

    name = "llm_agent"

    def __init__(
        self,
        space: SearchSpace,
        llm: Any = None,
        seed: int | None = 0,
        *,
        task: str = DEFAULT_TASK,
        hardware: str = "",
        history: int = 30,
        n_best: int | None = None,
        fallback: Any = None,
        temperature: float = 0.7,
        repair: bool = False,
        avoid_repeats: bool = True,
    ) -> None:
        super().__init__(space, seed)
        self.llm = as_client(llm)
        self.task = task
        self.hardware = hardware
        self.history = max(0, history)
        self.n_best = max(0, min(self.history, history // 3 if n_best is None else n_best))
        self.fallback = fallback
        self.temperature = temperature
        self.repair = repair
        self.avoid_repeats = avoid_repeats
        self.prefix = P.prefix_text(space, task, hardware) + "\n\n" + RULES

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "llm": self.llm.describe(),
            "history": self.history,
            "n_best": self.n_best,
            "temperature": self.temperature,
            "fallback": None if self.fallback is None else type(self.fallback).__name__,
        }

    # -- the prompt ----------------------------------------------------------------------------
    def window(self, obs: list[P.Observation]) -> tuple[list[P.Observation], list[P.Observation]]:
        """The best rows and the recent rows the prompt would like to show (before fitting)."""
        ok = [o for o in obs if o.ok]
        sign = 1.0 if self.space.direction == "minimize" else -1.0
        best = sorted(ok, key=lambda o: (sign * float(o.value), o.number))[: self.n_best]  # type: ignore[arg-type]
        shown = {o.number for o in best}
        rest = [o for o in obs if o.number not in shown]
        recent = rest[-(self.history - len(best)) :] if self.history > len(best) else []
        return best, recent

    def _body(self, best: list[P.Observation], recent: list[P.Observation], total: int) -> str:
        def row(o: P.Observation) -> str:
            return f"#{o.number} {P.render_config(self.space, o.config)} -> {P.result_text(self.space, o)}"

        if not total:
            return "No trial has finished yet.\n\nPropose the first configuration."
        lines = []
        if best:
            lines += ["Best trials so far (best first):"] + [row(o) for o in best]
        if recent:
            lines += ["Most recent trials:"] + [row(o) for o in recent]
        if not best and not recent:
            lines.append("(the history does not fit in the model's context)")
        lines.append(f"({len(best) + len(recent)} of {total} finished trials shown)")
        lines.append("")
        lines.append("Propose the next configuration.")
        return "\n".join(lines)

    def build_messages(self, obs: list[P.Observation]) -> list[Message]:
        """The prompt for the next proposal, fitted to the model's context (rule in module doc)."""
        best, recent = self.window(obs)
        rows = [("best", o) for o in best] + [("recent", o) for o in recent]
        # Drop order: oldest recent rows first, then the weakest of the best rows.
        drop = [len(best) + i for i in range(len(recent))] + list(range(len(best) - 1, -1, -1))

        def build(kept: list[tuple[str, P.Observation]]) -> list[Message]:
            b = [o for tag, o in kept if tag == "best"]
            r = [o for tag, o in kept if tag == "recent"]
            return P.messages(self.prefix, self._body(b, r, len(obs)))

        budget = (
            self.llm.context_window
            - self.llm.reply_budget(config_constraint(self.space))
            - P.PROMPT_MARGIN
        )
        msgs, _ = P.fit_rows(rows, drop, build, self.llm.count_tokens, budget)
        return msgs

    # -- proposals -----------------------------------------------------------------------------
    def _seed(self, trial: FrozenTrial) -> int:
        return (int(self.seed or 0) * 1_000_003 + trial.number) % (2**31)

    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        obs = P.observations(study, self.space)
        msgs = self.build_messages(obs)
        ran = {P.render_config(self.space, o.config): o.number for o in obs}
        warned: set[str] = set()

        def parse(text: str) -> tuple[Config, list[str]]:
            config, notes = parse_config(text, self.space, repair=self.repair)
            key = P.render_config(self.space, config)
            if self.avoid_repeats and key in ran:
                if key not in warned:
                    warned.add(key)
                    raise ParseError(f"this configuration already ran as trial #{ran[key]}")
                notes.append(f"repeats trial #{ran[key]} (accepted after one re-ask)")
            return config, notes

        def ask() -> Config:
            return self.llm.ask(
                msgs,
                parse,
                constraint=config_constraint(self.space),
                study=study,
                trial=trial,
                method=self.name,
                purpose="propose",
                temperature=self.temperature,
                seed=self._seed(trial),
            )

        try:
            config = settle(self.llm, ask, retry=self.fallback is None)
        except LLMError as e:
            if self.fallback is None:
                raise
            return fallback_propose(self, self.fallback, e, study, trial)
        self.source = "llm"
        return config
