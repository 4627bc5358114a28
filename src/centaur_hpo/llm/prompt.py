"""Prompt pieces shared by the LLM methods: the fixed prefix, trial history, and windowing.

Layout rule: everything that stays the same for a whole study (system message, task, hardware
limits, search space, rules) comes first and never contains a counter, so llama.cpp's prefix cache
(and a server's prompt cache) reuses it; the trial history and the question come after it.

Windowing rule (:func:`fit_rows`): a method picks the rows it would like to show in priority
order; rows are then dropped, lowest priority first, until the prompt's token count (measured with
the provider's tokenizer where it has one, else 1 token per 3 characters) fits
``context - reply budget - 64``. So a late-run prompt never outgrows the model's context.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.study import Study

from centaur_hpo.llm.base import Message
from centaur_hpo.llm.grammar import format_value, key_order
from centaur_hpo.methods.base import OUTCOME_KEY, finished_trials
from centaur_hpo.space import Config, SearchSpace

SYSTEM = (
    "You are an expert in tuning the hyperparameters of neural-network training runs. "
    "You answer with JSON only, exactly in the format asked for."
)
PROMPT_MARGIN = 64


@dataclass(frozen=True)
class Observation:
    """One finished trial as the LLM methods see it."""

    number: int
    config: Config
    value: float | None  # None for a failed trial (its penalty is not a measurement)
    outcome: str  # ok, oom, diverged, timeout, crash, no_metric
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and self.value is not None and math.isfinite(self.value)


def observations(study: Study, space: SearchSpace) -> list[Observation]:
    """Finished trials with a full configuration of ``space``, in trial order."""
    out = []
    for t in finished_trials(study):
        if any(n not in t.params for n in space.names):
            continue
        outcome = str(t.user_attrs.get(OUTCOME_KEY, "ok"))
        value = t.values[0] if t.values else None
        error = str(t.user_attrs.get("error") or "")
        config = {n: t.params[n] for n in space.names}
        if outcome != "ok":
            value = None
        out.append(Observation(t.number, config, value, outcome, error))
    return out


def render_config(space: SearchSpace, config: Config) -> str:
    """A configuration as JSON in the reply format (key order, fixed-point floats)."""
    parts = [
        f"{json.dumps(n)}: {format_value(space.params[n], config[n])}" for n in key_order(space)
    ]
    return "{" + ", ".join(parts) + "}"


def failure_text(obs: Observation, limit: int = 80) -> str:
    """``FAILED (oom: CUDA out of memory ...)``: the outcome and a short reason."""
    reason = " ".join(obs.error.split())
    if len(reason) > limit:
        reason = reason[: limit - 3] + "..."
    return f"FAILED ({obs.outcome}{': ' + reason if reason else ''})"


def result_text(space: SearchSpace, obs: Observation, decimals: int = 6) -> str:
    if obs.ok:
        return f"{space.metric} {obs.value:.{decimals}f}"
    return failure_text(obs)


def describe_space(space: SearchSpace) -> str:
    """The search space as the prompt states it: types, ranges, choices, defaults, constraints."""
    lines = []
    for n in key_order(space):
        p = space.params[n]
        default = "" if p.default is None else f", default {format_value(p, p.default)}"
        if p.type in ("categorical", "bool"):
            choices = ", ".join(json.dumps(c) for c in p.choices or ())
            lines.append(f"- {n}: one of {choices}{default}")
            continue
        values = p.values()
        if values is not None:
            lines.append(f"- {n}: int, one of {', '.join(map(str, values))}{default}")
            continue
        scale = ", log scale" if p.log else ""
        lo, hi = format_value(p, p.low), format_value(p, p.high)
        lines.append(f"- {n}: {p.type} in [{lo}, {hi}]{scale}{default}")
    cons = []
    for c in space.constraints:
        consts = {k: v for k, v in space.constants.items() if k in c.names()}
        where = f" ({', '.join(f'{k} = {v}' for k, v in consts.items())})" if consts else ""
        cons.append(f"{c.target} must be a multiple of {c.of}{where}")
    if cons:
        lines.append("Constraints: " + "; ".join(cons) + ".")
    return "\n".join(lines)


def objective_text(space: SearchSpace) -> str:
    goal = "lower" if space.direction == "minimize" else "higher"
    return (
        f"Objective: {space.metric}, {goal} is better. A failed run (out of memory, diverged, "
        "timeout, crash) gives no result and wastes a whole trial."
    )


def prefix_text(space: SearchSpace, task: str, hardware: str) -> str:
    """The fixed, cacheable start of every user message of a study."""
    parts = [f"Task: {task.strip()}"]
    if hardware.strip():
        parts.append(f"Hardware and limits: {hardware.strip()}")
    parts.append(objective_text(space))
    parts.append(
        f"Search space ({len(space)} parameters, always written in this order):\n"
        + describe_space(space)
    )
    return "\n\n".join(parts)


def messages(prefix: str, body: str) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{prefix}\n\n{body}"},
    ]


def fit_rows(
    rows: Sequence[Any],
    drop_order: Sequence[int],
    build: Callable[[list[Any]], list[Message]],
    count: Callable[[list[Message]], int],
    budget: int,
) -> tuple[list[Message], list[Any]]:
    """Drop rows in ``drop_order`` (indices into ``rows``) until ``build(rows)`` fits ``budget``.

    Returns the messages and the rows kept. Counting is done on the whole prompt; the search for
    how many rows to drop is a bisection, so a long history costs a few token counts, not one per
    row.
    """

    def keep(k: int) -> list[Any]:
        dropped = set(drop_order[:k])
        return [r for i, r in enumerate(rows) if i not in dropped]

    msgs = build(list(rows))
    if count(msgs) <= budget:
        return msgs, list(rows)
    lo, hi = 1, len(drop_order)
    while lo < hi:
        mid = (lo + hi) // 2
        if count(build(keep(mid))) <= budget:
            hi = mid
        else:
            lo = mid + 1
    kept = keep(lo)
    return build(kept), kept


def stratified(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` items evenly spaced over ``items`` (which is sorted by value): a spread sample."""
    if k <= 0 or not items:
        return []
    if k >= len(items):
        return list(items)
    step = (len(items) - 1) / (k - 1) if k > 1 else 0
    idx = sorted({round(i * step) for i in range(k)})
    return [items[i] for i in idx]
