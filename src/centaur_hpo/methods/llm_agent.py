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

Parallel mode (issue 6): an agent is sequential by nature, but when trials run concurrently
(``StudyRunner(n_jobs=k)`` or several ``centaur worker`` processes) one call per trial would
propose each configuration without knowing what the others are about to run. So with
``batch`` > 1 the agent asks once for ``batch`` distinct configurations, showing the trials still
running as pending, and serves them one per trial. ``batch=0`` (default) picks it per call: the
number of other trials RUNNING in the study + 1, capped at :data:`MAX_AUTO_BATCH`; a sequential
study thus asks one at a time, exactly as before. The unserved configurations are queued in the
sampler's saved state, so a resumed study and every worker serve from the same queue.
Staleness rule: a queued configuration is dropped once as many trials have finished since its
call as the call asked for (its batch was meant to cover that many results), and the next
proposal asks again with the new history.

Provenance: every trial proposed by the LLM has the system attribute ``centaur:llm_call`` =
``{"call", "seq", "trial", "index"}``: the client call id and the sequence number of its ``ok``
record, the trial whose proposal made the call, and the configuration's position in the reply.
A batch call's records have the purpose ``propose_batch`` (their ``parsed`` is a list).
"""

from __future__ import annotations

from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.base import LLMError, Message, ParseError
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.parse import parse_config, parse_configs
from centaur_hpo.llm.sampling import as_client, fallback_propose, settle
from centaur_hpo.methods.base import ConfigSampler
from centaur_hpo.space import Config, SearchSpace

DEFAULT_TASK = "Tune the hyperparameters of a neural-network training script."

RULES = """Rules:
- Reply with one JSON object that gives every parameter above a value, in the order listed.
- Integers as integers, floats as decimals, choices exactly as listed; stay inside the ranges.
- Learn from the history: move towards what worked, away from what failed, and do not repeat a \
configuration that already ran."""

#: Largest batch the automatic mode asks for: more configurations per reply means a longer
#: reply and proposals made with ever older information.
MAX_AUTO_BATCH = 4
#: Trial system attribute linking an LLM-proposed trial to the call that proposed it.
CALL_LINK_KEY = "centaur:llm_call"


class LLMAgentSampler(ConfigSampler):
    """An LLM proposes each configuration from the search space and the trial history.

    ``llm``: an :class:`~centaur_hpo.llm.LLMClient`, a provider, a spec string, or None (the
    embedded model). ``task`` and ``hardware`` are stated verbatim in the prompt (``hardware`` is
    where the caller says e.g. "memory cap 3 GiB (address-space limit)"). ``history`` bounds the
    rows shown, ``n_best`` of them the best trials (default a third). ``fallback``: an optional
    sampler used when the LLM fails (opt-in). ``avoid_repeats``: a reply that repeats a configuration
    that already ran is re-asked once, then accepted. ``batch``: configurations per LLM call when
    trials run in parallel (0 = automatic, 1 = one per call; see the module doc).
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
        batch: int = 0,
    ) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise ValueError(
                f"batch={batch!r}: use 0 (automatic), 1 (one configuration per call) or more"
            )
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
        self.batch = batch
        self.state["queue"] = []
        self.prefix = P.prefix_text(space, task, hardware) + "\n\n" + RULES

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "llm": self.llm.describe(),
            "history": self.history,
            "n_best": self.n_best,
            "temperature": self.temperature,
            "batch": self.batch,
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

    def _body(
        self,
        best: list[P.Observation],
        recent: list[P.Observation],
        total: int,
        n: int = 1,
        pending: tuple[Config, ...] = (),
    ) -> str:
        def row(o: P.Observation) -> str:
            return f"#{o.number} {P.render_config(self.space, o.config)} -> {P.result_text(self.space, o)}"

        lines = []
        if not total:
            lines.append("No trial has finished yet.")
        else:
            if best:
                lines += ["Best trials so far (best first):"] + [row(o) for o in best]
            if recent:
                lines += ["Most recent trials:"] + [row(o) for o in recent]
            if not best and not recent:
                lines.append("(the history does not fit in the model's context)")
            lines.append(f"({len(best) + len(recent)} of {total} finished trials shown)")
        if pending:
            lines.append("Running now (results pending; do not propose these again):")
            lines += [P.render_config(self.space, c) for c in pending]
        lines.append("")
        if n > 1:
            lines.append(
                f"Propose {n} different configurations; they will run in parallel, so spread them "
                'to be informative together. Reply as {"configs": [{...}, ...]}, each '
                "configuration one JSON object with every parameter."
            )
        elif not total:
            lines.append("Propose the first configuration.")
        else:
            lines.append("Propose the next configuration.")
        return "\n".join(lines)

    def build_messages(
        self, obs: list[P.Observation], n: int = 1, pending: tuple[Config, ...] = ()
    ) -> list[Message]:
        """The prompt for the next ``n`` proposals, fitted to the context (rule in module doc).

        ``pending``: configurations of trials still running, shown so a batch avoids them.
        """
        best, recent = self.window(obs)
        rows = [("best", o) for o in best] + [("recent", o) for o in recent]
        # Drop order: oldest recent rows first, then the weakest of the best rows.
        drop = [len(best) + i for i in range(len(recent))] + list(range(len(best) - 1, -1, -1))

        def build(kept: list[tuple[str, P.Observation]]) -> list[Message]:
            b = [o for tag, o in kept if tag == "best"]
            r = [o for tag, o in kept if tag == "recent"]
            return P.messages(self.prefix, self._body(b, r, len(obs), n, pending))

        budget = (
            self.llm.context_window
            - self.llm.reply_budget(config_constraint(self.space, n))
            - P.PROMPT_MARGIN
        )
        msgs, _ = P.fit_rows(rows, drop, build, self.llm.count_tokens, budget)
        return msgs

    # -- proposals -----------------------------------------------------------------------------
    def _seed(self, trial: FrozenTrial) -> int:
        return (int(self.seed or 0) * 1_000_003 + trial.number) % (2**31)

    def running_configs(self, study: Study, trial: FrozenTrial) -> list[Config]:
        """Configurations of the other trials running now (those already given parameters)."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return [
            {n: t.params[n] for n in self.space.names}
            for t in running
            if t.number != trial.number and all(n in t.params for n in self.space.names)
        ]

    def batch_size(self, study: Study, trial: FrozenTrial) -> int:
        """How many configurations the next call asks for (``batch``, or automatic)."""
        if self.batch:
            return self.batch
        others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        n_running = sum(1 for t in others if t.number != trial.number)
        return min(MAX_AUTO_BATCH, n_running + 1)

    def _link(self, study: Study, trial: FrozenTrial, link: dict[str, Any]) -> None:
        study._storage.set_trial_system_attr(trial._trial_id, CALL_LINK_KEY, link)

    def _last_ok_call(self, trial: FrozenTrial) -> dict[str, Any]:
        # The client appends each record as it stores it; under the study lock the last one is
        # the ``ok`` record of the call just made.
        rec = self.llm.records[-1] if self.llm.records else {}
        return {"call": rec.get("call"), "seq": rec.get("seq"), "trial": trial.number}

    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        obs = P.observations(study, self.space)
        queue: list[dict[str, Any]] = self.state.setdefault("queue", [])
        # Staleness rule (module doc): drop what was asked before a whole batch of new results.
        queue[:] = [q for q in queue if len(obs) - q["finished"] < q["n"]]
        n = self.batch_size(study, trial)
        if not queue and n > 1:
            try:
                self._ask_batch(study, trial, obs, n)
            except LLMError as e:
                if self.fallback is None:
                    raise
                return fallback_propose(self, self.fallback, e, study, trial)
            queue = self.state["queue"]
        if queue:
            entry = queue.pop(0)
            self._link(study, trial, entry["link"])
            self.source = "llm"
            return dict(entry["config"])
        return self._propose_one(study, trial, obs)

    def _ask_batch(
        self, study: Study, trial: FrozenTrial, obs: list[P.Observation], n: int
    ) -> None:
        """One call for ``n`` distinct configurations, queued with their provenance."""
        pending = self.running_configs(study, trial)
        msgs = self.build_messages(obs, n, tuple(pending))
        ran = {P.render_config(self.space, o.config): f"trial #{o.number}" for o in obs}
        ran.update({P.render_config(self.space, c): "a running trial" for c in pending})
        warned: list[bool] = []

        def parse(text: str) -> tuple[list[Config], list[str]]:
            configs, notes = parse_configs(text, self.space, n, repair=self.repair)
            if not self.avoid_repeats:
                return configs, notes
            keys = [P.render_config(self.space, c) for c in configs]
            fresh = [c for c, k in zip(configs, keys, strict=True) if k not in ran]
            notes += [f"{k} repeats {ran[k]}" for k in keys if k in ran]
            if fresh:
                return fresh, notes
            if not warned:
                warned.append(True)
                raise ParseError("every configuration repeats one that already ran or is running")
            notes.append("all repeat earlier trials (accepted after one re-ask)")
            return configs, notes

        def ask() -> list[Config]:
            return self.llm.ask(
                msgs,
                parse,
                constraint=config_constraint(self.space, n),
                study=study,
                trial=trial,
                method=self.name,
                purpose="propose_batch",
                temperature=self.temperature,
                seed=self._seed(trial),
            )

        configs = settle(self.llm, ask, retry=self.fallback is None)
        call = self._last_ok_call(trial)
        self.state["queue"] = [
            {"config": dict(c), "n": n, "finished": len(obs), "link": {**call, "index": i}}
            for i, c in enumerate(configs)
        ]

    def _propose_one(self, study: Study, trial: FrozenTrial, obs: list[P.Observation]) -> Config:
        """One configuration per call (``batch`` 1, or a sequential study in automatic mode)."""
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
        self._link(study, trial, {**self._last_ok_call(trial), "index": 0})
        self.source = "llm"
        return config
