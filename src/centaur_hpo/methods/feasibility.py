"""A feasibility model: where in the search space do trials fail (run out of memory, say)?

Failed trials are the most expensive kind of trial: they cost compute and teach an optimizer
little beyond "not here". Centaur's ``feasibility=True`` option fits this model on every trial
that ran and uses it two ways: CMA-ES's candidates predicted to fail are resampled, and the LLM is
shown the model and asked again (once) when it proposes a configuration predicted to fail.

The model is an L2-regularised logistic regression, fitted by Newton's method on a small fixed
feature map of the configuration:

* every numeric parameter's unit value (log-warped where the parameter is log-scale),
* for numeric parameters on a linear scale with a positive range, also the normalised log value,
  so that a product boundary such as ``batch * depth * width > memory`` (a sum of logs) is linear,
* one-hot categorical values.

Why this and not a Gaussian-process classifier: with the handful of failures a study sees, a
linear boundary in log space is what memory use actually looks like, it fits in microseconds, is
deterministic (so a resumed study makes the same decisions), and its weights can be stated to the
LLM in words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from centaur_hpo.space import Config, SearchSpace

#: Outcomes a study records for a failed trial.
FAILURE_OUTCOMES = ("oom", "diverged", "timeout", "crash", "no_metric")


def parse_outcomes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"oom"``, ``"oom,crash"``, ``"all"`` or a sequence -> the outcomes the model learns."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if items == ["all"]:
        return FAILURE_OUTCOMES
    bad = [s for s in items if s not in FAILURE_OUTCOMES]
    if bad or not items:
        raise ValueError(
            f"feasibility outcomes {bad or items!r} are not failure outcomes; use 'all' or a "
            f"comma-separated subset of {', '.join(FAILURE_OUTCOMES)}"
        )
    return tuple(items)


@dataclass
class FeatureMap:
    """The fixed feature map of a search space (see the module doc)."""

    space: SearchSpace
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = []
        for p in self.space:
            if p.type in ("int", "float"):
                self.labels.append(p.name)
                if not p.log and p.low is not None and p.low > 0:
                    self.labels.append(f"log {p.name}")
            else:
                self.labels += [f"{p.name}={c}" for c in p.choices or ()]

    def __call__(self, config: Config) -> np.ndarray:
        out: list[float] = []
        for p in self.space:
            v = config[p.name]
            if p.type in ("int", "float"):
                out.append(self.space.to_unit(p.name, v))
                if not p.log and p.low is not None and p.low > 0:
                    assert p.high is not None
                    lo, hi = math.log(p.low), math.log(p.high)
                    out.append((math.log(max(v, p.low)) - lo) / (hi - lo))
            else:
                out += [1.0 if v == c else 0.0 for c in p.choices or ()]
        return np.asarray(out, dtype=float)


class FeasibilityModel:
    """P(a configuration fails with one of ``outcomes``), from the trials seen so far.

    It is *active* only once at least ``min_failures`` modelled failures and as many other
    trials exist; before that :meth:`p_fail` returns ``None`` (no opinion).
    """

    def __init__(
        self,
        space: SearchSpace,
        outcomes: Sequence[str] = ("oom",),
        *,
        l2: float = 0.01,
        min_failures: int = 2,
    ) -> None:
        self.space = space
        self.outcomes = tuple(outcomes)
        self.l2 = l2
        self.min_failures = max(1, min_failures)
        self.features = FeatureMap(space)
        self.w: np.ndarray | None = None
        self.b = 0.0
        self.n_fail = 0
        self.n_ok = 0

    @property
    def active(self) -> bool:
        return self.w is not None

    def fit(self, data: Iterable[tuple[Config, str]]) -> bool:
        """Fit on ``(config, outcome)`` pairs; returns whether the model is now active."""
        rows, labels = [], []
        for config, outcome in data:
            if any(n not in config for n in self.space.names):
                continue
            rows.append(self.features(config))
            labels.append(1.0 if outcome in self.outcomes else 0.0)
        y = np.asarray(labels)
        self.n_fail = int(y.sum())
        self.n_ok = len(y) - self.n_fail
        self.w = None
        if self.n_fail < self.min_failures or self.n_ok < self.min_failures:
            return False
        X = np.asarray(rows)
        n, d = X.shape
        Xb = np.hstack([X, np.ones((n, 1))])
        theta = np.zeros(d + 1)
        reg = np.full(d + 1, self.l2)
        reg[-1] = 1e-6  # the intercept is (almost) free
        for _ in range(50):
            p = _sigmoid(Xb @ theta)
            grad = Xb.T @ (p - y) + reg * theta
            hess = (Xb * (p * (1 - p))[:, None]).T @ Xb + np.diag(reg)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if float(np.max(np.abs(step))) < 1e-8:
                break
        self.w, self.b = theta[:-1], float(theta[-1])
        return True

    def p_fail(self, config: Config) -> float | None:
        if self.w is None:
            return None
        return float(_sigmoid(np.array([self.features(config) @ self.w + self.b]))[0])

    def drivers(self, k: int = 4) -> list[tuple[str, float]]:
        """The ``k`` features with the largest weights (positive: more of it, more failures)."""
        if self.w is None:
            return []
        order = np.argsort(-np.abs(self.w))[:k]
        return [(self.features.labels[i], float(self.w[i])) for i in order if abs(self.w[i]) > 1e-3]

    def describe(self) -> str:
        """The model in words, for the LLM and for people."""
        what = "/".join(self.outcomes)
        if self.w is None:
            return (
                f"not fitted yet ({self.n_fail} {what} failures and {self.n_ok} other trials; "
                f"needs {self.min_failures} of each)"
            )
        parts = []
        for label, weight in self.drivers():
            parts.append(f"{label} {'higher' if weight > 0 else 'lower'}")
        risk = ", ".join(parts) or "no parameter stands out"
        return (
            f"logistic regression fitted on {self.n_fail + self.n_ok} trials "
            f"({self.n_fail} failed with {what}); failure risk rises with: {risk}"
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
