"""What Centaur's LLM is shown: CMA-ES's state in the hyperparameters' own units, the history,
and the memory evidence - each part switchable off for ablations.

Kept apart from the sampler (:mod:`centaur_hpo.methods.centaur`) because it is pure presentation:
it turns numbers the sampler already has into text, and its tests need no study.

Units, so a model can reason about them the way a person tuning the run would:

* the mean is decoded to a configuration (rounded to valid values, categoricals at their most
  likely choice);
* each parameter's spread is one standard deviation of CMA-ES's sampling distribution, the integer
  margin included: ``+/- s`` for linear parameters, a factor ``×/÷ f`` for log-scale ones (one
  standard deviation multiplies or divides the value by ``f``);
* the correlation matrix is labelled (a lower triangle with the parameter named on each row), or
  only the pairs with ``|r| >= 0.2``;
* categorical choices with their probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from centaur_hpo.llm import prompt as P
from centaur_hpo.llm.grammar import format_value
from centaur_hpo.space import Config, Param, SearchSpace

#: The parts of the state the LLM can be shown; each is a ``show_<part>`` option.
STATE_PARTS = (
    "mean",
    "sigma",
    "spread",
    "correlation",
    "categorical",
    "proposal",
    "generation",
    "top",
    "recent",
    "memory",
    "feasibility",
)

RULES = """How this works: an evolution strategy (CMA-ES) searches this space; you propose some of \
its trials. Below is its current search distribution in the parameters' own units: the mean is \
its best estimate of a good configuration, the spread is one standard deviation (a log-scale \
parameter's spread is a factor: ×/÷ 2 means the value is typically between half and twice the \
mean), and correlations show which parameters it moves together.
Rules:
- Reply with one JSON object that gives every parameter a value, in the order listed.
- Integers as integers, floats as decimals, choices exactly as listed; stay inside the ranges.
- Use the distribution and the history: stay near what worked, away from what failed; do not \
repeat a configuration that already ran."""


@dataclass(frozen=True)
class Row:
    """A trial as the prompt and the share rule see it."""

    number: int
    config: Config
    value: float | None  # None for a failed trial: its penalty is not a measurement
    outcome: str
    error: str
    source: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok" and self.value is not None and math.isfinite(self.value)


@dataclass
class StateView:
    """Renders the parts of the state that ``show`` switches on (see the module doc)."""

    space: SearchSpace
    show: dict[str, bool]
    top_k: int = 5
    recent: int = 20
    correlation: str = "matrix"
    memory_params: tuple[str, ...] = ()
    memory_k: int = 3

    # -- CMA-ES's distribution -------------------------------------------------------------------
    def state_text(
        self,
        summary: dict[str, Any],
        mean: Config | None,
        candidate: Config | None = None,
        feasibility: str | None = None,
    ) -> str:
        """``summary`` is :meth:`CmaEsSampler.summary`; ``mean`` the mean as a configuration."""
        s, lines = summary, []
        if self.show["generation"]:
            lines.append(
                f"CMA-ES is in generation {s['generation']} (population {s['population_size']}; "
                "a generation is updated after that many trials)."
            )
        if self.show["mean"] and mean is not None:
            lines.append(
                "Mean of its search distribution (rounded to valid values): "
                + P.render_config(self.space, mean)
            )
        if self.show["sigma"] and "sigma" in s:
            lines.append(
                f"Step size sigma: {s['sigma']:.3g} (it scales every spread below; "
                "it shrinks as CMA-ES converges)."
            )
        if self.show["spread"] and "spread" in s:
            lines.append("Spread of each parameter (one standard deviation around the mean):")
            for name, sp in s["spread"].items():
                lines.append(f"- {name}: {spread_text(self.space.params[name], sp)}")
        if self.show["correlation"] and "correlation" in s and len(s["correlation"]["labels"]) > 1:
            lines.append(self.correlation_text(s["correlation"]))
        if self.show["categorical"] and "categorical" in s:
            lines.append("Probabilities of the categorical choices:")
            for name, probs in s["categorical"].items():
                lines.append(f"- {name}: " + ", ".join(f"{c} {p:.2f}" for c, p in probs.items()))
        if self.show["proposal"] and candidate is not None:
            lines.append(
                "CMA-ES's own proposal for this trial: "
                + P.render_config(self.space, self.space.repair(candidate))
            )
        if self.show["feasibility"] and feasibility:
            lines.append(feasibility)
        return "\n".join(lines)

    def correlation_text(self, corr: dict[str, Any]) -> str:
        labels, m = corr["labels"], np.asarray(corr["matrix"])
        if self.correlation == "pairs":
            pairs = [
                f"{labels[i]} & {labels[j]} {m[i, j]:+.2f}"
                for i in range(len(labels))
                for j in range(i)
                if abs(m[i, j]) >= 0.2
            ]
            return "Correlated pairs (|r| >= 0.2): " + ("; ".join(pairs) or "none")
        width = max(len(x) for x in labels)
        out = ["Correlation matrix (lower triangle; column j is the parameter on row j):"]
        for i, name in enumerate(labels):
            cells = " ".join(f"{m[i, j]:+.2f}" for j in range(i))
            out.append(f"{i + 1:>2} {name:<{width}} {cells}".rstrip())
        return "\n".join(out)

    # -- the history -----------------------------------------------------------------------------
    def window(self, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        """The best rows (best first) and the most recent rows not among them."""
        top: list[Row] = []
        if self.show["top"] and self.top_k:
            ok = [r for r in rows if r.ok]
            sign = 1.0 if self.space.direction == "minimize" else -1.0
            top = sorted(ok, key=lambda r: (sign * float(r.value or 0.0), r.number))[: self.top_k]
        recent: list[Row] = []
        if self.show["recent"] and self.recent:
            shown = {r.number for r in top}
            recent = [r for r in rows if r.number not in shown][-self.recent :]
        return top, recent

    def row_text(self, r: Row) -> str:
        res = P.result_text(
            self.space, P.Observation(r.number, r.config, r.value, r.outcome, r.error)
        )
        return f"#{r.number} {P.render_config(self.space, r.config)} -> {res} [{r.source}]"

    def memory_text(self, rows: list[Row]) -> str:
        """The memory evidence: the largest configurations that ran, the smallest that OOMed.

        "Largest" is by the memory parameters (default: the int parameters - depth, widths,
        batch sizes): a configuration that ran shows the limit is above it; one that ran out of
        memory shows it is below. Only configurations not dominated on every memory parameter by
        another of their kind are kept, the ``memory_k`` most extreme of them.
        """
        if not self.show["memory"]:
            return ""
        names = [n for n in self.memory_params if n in self.space.params]
        if not names:
            return ""
        ran = [r for r in rows if r.outcome == "ok"]
        oom = [r for r in rows if r.outcome == "oom"]
        if not oom and not self.space.memory_cap:
            return ""

        def units(r: Row) -> list[float]:
            return [self.space.to_unit(n, r.config[n]) for n in names]

        def frontier(items: list[Row], largest: bool) -> list[Row]:
            sign = 1.0 if largest else -1.0
            keep = []
            for a in items:
                ua = [sign * u for u in units(a)]
                dominated = any(
                    all(sign * ub >= x for ub, x in zip(units(b), ua, strict=True))
                    and units(b) != units(a)
                    for b in items
                )
                if not dominated:
                    keep.append(a)
            keep.sort(key=lambda r: -sign * sum(units(r)))
            seen, out = set(), []
            for r in keep:
                key = tuple(r.config[n] for n in names)
                if key not in seen:
                    seen.add(key)
                    out.append(r)
            return out[: self.memory_k]

        def fmt(r: Row) -> str:
            vals = ", ".join(
                f"{n}={format_value(self.space.params[n], r.config[n])}" for n in names
            )
            return f"#{r.number} {vals}"

        big = frontier(ran, largest=True)
        small = frontier(oom, largest=False)
        return "\n".join(
            [
                f"Memory evidence (on {', '.join(names)}):",
                "- largest that ran: " + ("; ".join(fmt(r) for r in big) if big else "none yet"),
                "- smallest that ran out of memory: "
                + ("; ".join(fmt(r) for r in small) if small else "none so far"),
            ]
        )

    def body(
        self,
        state: str,
        top: list[Row],
        recent: list[Row],
        memory: str,
        running: list[Config],
        n_finished: int,
    ) -> str:
        """The part of the prompt after the cacheable prefix."""
        parts = [state]
        if top:
            parts.append(
                "Best trials so far (best first):\n" + "\n".join(self.row_text(r) for r in top)
            )
        if recent:
            parts.append("Most recent trials:\n" + "\n".join(self.row_text(r) for r in recent))
        if memory:
            parts.append(memory)
        if running:
            parts.append(
                "Running now (no result yet):\n"
                + "\n".join(P.render_config(self.space, c) for c in running)
            )
        parts.append(f"({n_finished} trials finished so far.)\n\nPropose the next configuration.")
        return "\n\n".join(parts)


def mean_config(space: SearchSpace, summary: dict[str, Any], const: dict[str, Any]) -> Config:
    """CMA-ES's mean as a valid configuration (categoricals at their most likely choice)."""
    config: Config = dict(summary.get("mean", {}))
    for name, probs in summary.get("categorical", {}).items():
        choices = list(space.params[name].choices or ())
        best = max(range(len(choices)), key=lambda i: probs[str(choices[i])])
        config[name] = choices[best]
    for name, value in const.items():
        config.setdefault(name, value)
    return space.repair(config)


def spread_text(p: Param, sp: dict[str, Any]) -> str:
    if "factor" in sp:
        return f"×/÷ {sp['factor']:.3g} (log scale: multiplied or divided by this factor)"
    std = float(sp["std"])
    return f"+/- {std:.3g}" if p.type == "float" else f"+/- {std:.1f}"
