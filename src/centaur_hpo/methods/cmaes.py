"""CMA-ES over a mixed space, with categorical parameters modelled by the optimizer itself.

The optimizer is ``cmaes.CatCMAwM`` (CatCMA with margin): a Gaussian over the continuous and
integer parameters plus a categorical distribution per categorical parameter, all adapted from
the same ranking. Parameters are encoded into the unit interval (log-warped where log-scale);
integers and powers of two are the optimizer's discrete values, so it proposes exactly what runs.

Configurations that the optimizer did not propose (trial 0 = the default, an LLM's proposal in
Centaur, a warm start) are *injected*: their step from the mean is clipped in Mahalanobis norm
before the update, as recommended for injected solutions (Hansen, "Injecting external solutions
into CMA-ES", 2011), so a far-away configuration cannot blow up the step-size adaptation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from cmaes import CatCMAwM
from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.methods.base import RERUN_KEY, ConfigSampler
from centaur_hpo.space import Config, Param, SearchSpace

_MAX_DISCRETE = 512  # int parameters with more values than this are searched as continuous


@dataclass
class Encoding:
    """How each parameter maps to the optimizer's continuous (x), integer (z), categorical (c)."""

    space: SearchSpace

    def __post_init__(self) -> None:
        self.cont: list[str] = []
        self.disc: list[str] = []
        self.disc_values: dict[str, list[Any]] = {}
        self.cats: list[str] = []
        self.const: dict[str, Any] = {}
        for p in self.space:
            values = p.values()
            if p.type in ("categorical", "bool"):
                if len(values or []) >= 2:
                    self.cats.append(p.name)
                else:
                    self.const[p.name] = (values or [p.default])[0]
            elif p.type == "int":
                if values is None and p.high - p.low + 1 <= _MAX_DISCRETE:  # type: ignore[operator]
                    values = list(range(int(p.low), int(p.high) + 1))  # type: ignore[arg-type]
                if values is None:
                    self.cont.append(p.name)
                elif len(values) >= 2:
                    self.disc.append(p.name)
                    self.disc_values[p.name] = values
                else:
                    self.const[p.name] = values[0]
            else:
                self.cont.append(p.name)
        self.gauss = self.cont + self.disc

    def z_space(self) -> list[list[float]]:
        return [[self.space.to_unit(n, v) for v in self.disc_values[n]] for n in self.disc]

    def c_space(self) -> list[int]:
        return [len(self.space.params[n].choices or ()) for n in self.cats]

    def encode_gauss(self, config: Config) -> np.ndarray:
        return np.array([self.space.to_unit(n, config[n]) for n in self.gauss], dtype=float)

    def encode_cat(self, config: Config) -> np.ndarray | None:
        if not self.cats:
            return None
        width = max(self.c_space())
        onehot = np.zeros((len(self.cats), width), dtype=bool)
        for i, n in enumerate(self.cats):
            onehot[i, list(self.space.params[n].choices or ()).index(config[n])] = True
        return onehot

    def decode(self, x: np.ndarray | None, z: np.ndarray | None, c: np.ndarray | None) -> Config:
        config: Config = dict(self.const)
        for i, n in enumerate(self.cont):
            assert x is not None
            value = self.space.from_unit(n, float(x[i]))
            config[n] = int(round(value)) if self.space.params[n].type == "int" else value
        for i, n in enumerate(self.disc):
            assert z is not None
            units = [self.space.to_unit(n, v) for v in self.disc_values[n]]
            k = int(np.argmin([abs(u - float(z[i])) for u in units]))
            config[n] = self.disc_values[n][k]
        for i, n in enumerate(self.cats if c is not None else ()):
            config[n] = list(self.space.params[n].choices or ())[int(np.argmax(c[i]))]
        return config

    def decode_gauss(self, v: np.ndarray) -> Config:
        """Decode a point of the Gaussian part (the mean, say) to native values."""
        x = v[: len(self.cont)] if self.cont else None
        z = v[len(self.cont) :] if self.disc else None
        return self.decode(x, z, None)  # categorical parameters are left out (c is None)


def tell_generation(opt: CatCMAwM, batch: list[tuple[Any, float]]) -> None:
    """``opt.tell(batch)``, guarding CatCMAwM's margin penalty against an empty IQR history.

    CatCMAwM scales its penalty for leaving the box by the median of past generations'
    inter-quartile ranges of fitness, and records a generation's IQR only when it is positive.
    If the first generations have none (three quarters of a generation failed at the same penalty
    value, common early in a study that runs out of memory), the median of an empty list is NaN,
    every penalized fitness is NaN and that generation is ranked in arbitrary order. Seeding the
    history with the generation's full fitness range (or a tiny positive value when all are equal)
    keeps the ranking by fitness; later generations' IQRs replace it.
    """
    history = getattr(opt, "_iqhist_values", None)
    if isinstance(history, list) and not history:
        fits = sorted(float(f) for _, f in batch)
        n = len(fits)
        iqr = fits[3 * n // 4] - fits[n // 4]
        if not (math.isfinite(iqr) and iqr > 0):
            spread = min(fits[-1] - fits[0], 1e12)  # failures told as 1e300 must not overflow
            history.append(spread if spread > 0 else 1e-12)
    opt.tell(batch)


def _same_config(a: Config, b: Config) -> bool:
    for name, value in b.items():
        other = a.get(name)
        if isinstance(value, float) or isinstance(other, float):
            if not isinstance(other, int | float) or not math.isclose(other, value, rel_tol=1e-9):
                return False
        elif other != value:
            return False
    return True


def native_std(space: SearchSpace, name: str, unit_std: float) -> dict[str, Any]:
    """A unit-space standard deviation in the parameter's own units.

    Log-scale parameters get a multiplicative factor (one standard deviation multiplies or divides
    the value by it); linear ones an additive standard deviation.
    """
    p: Param = space.params[name]
    assert p.low is not None and p.high is not None
    if p.log:
        return {"factor": math.exp(unit_std * (math.log(p.high) - math.log(p.low)))}
    return {"std": unit_std * (p.high - p.low)}


class CmaEsSampler(ConfigSampler):
    """CMA-ES (CatCMA with margin) with exact resume and safe injection of external solutions.

    ``x0`` defaults to the script's default configuration (the user's best prior guess);
    ``sigma0`` is the initial standard deviation in the unit-scaled space.
    """

    name = "cmaes"

    def __init__(
        self,
        space: SearchSpace,
        seed: int | None = None,
        *,
        sigma0: float = 0.25,
        popsize: int | None = None,
        x0: Config | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.enc = Encoding(space)
        self.sigma0 = sigma0
        self.popsize = popsize
        self.x0 = x0 or space.default_config()
        self.state.update(optimizer=None, pending={}, buffer=[], injected=0)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "sigma0": self.sigma0,
            "popsize": self.optimizer.population_size,
        }

    @property
    def optimizer(self) -> CatCMAwM:
        if self.state.get("optimizer") is None:
            n = len(self.enc.gauss)
            seed = None if self.seed is None else int(self.seed)
            self.state["optimizer"] = CatCMAwM(
                x_space=[[0.0, 1.0]] * len(self.enc.cont) if self.enc.cont else None,
                z_space=self.enc.z_space() if self.enc.disc else None,
                c_space=self.enc.c_space() if self.enc.cats else None,
                population_size=self.popsize,
                mean=self.enc.encode_gauss(self.x0) if n else None,
                sigma=1.0 if n else None,
                cov=np.eye(n) * self.sigma0**2 if n else None,
                seed=seed,
            )
        return self.state["optimizer"]

    # -- proposals -----------------------------------------------------------------------------
    def ask_solution(self) -> CatCMAwM.Solution:
        return self.optimizer.ask()

    def decode_solution(self, sol: CatCMAwM.Solution) -> Config:
        return self.enc.decode(sol.x, sol.z, sol.c)

    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        sol = self.ask_solution()
        self.state["pending"][trial.number] = sol
        return self.decode_solution(sol)

    # -- learning ------------------------------------------------------------------------------
    def inject_solution(self, config: Config) -> CatCMAwM.Solution:
        """An external configuration as a solution, its Gaussian step clipped in Mahalanobis norm."""
        opt = self.optimizer
        v = None
        x = z = None
        if self.enc.gauss:
            target = self.enc.encode_gauss(config)
            mean, sigma, cov = opt._mean, opt._sigma, opt._C
            # CatCMAwM samples v = m + sigma * A * y with y ~ N(0, C) (A: the integer margin
            # scaling) and recovers y = (v - m) / (sigma * A) in tell(), so the step is measured
            # in that metric.
            scale = sigma * np.asarray(opt._A, dtype=float)
            y = (target - mean) / scale
            n = len(y)
            dist = float(np.sqrt(y @ np.linalg.solve(cov, y)))
            limit = math.sqrt(n) + 2 * n / (n + 2)
            if dist > limit:
                y = y * (limit / dist)
            v = mean + scale * y
            k = len(self.enc.cont)
            x = np.clip(v[:k], 0.0, 1.0) if k else None
            z = self.enc.encode_gauss(config)[k:] if self.enc.disc else None
        c = self.enc.encode_cat(config)
        self.state["injected"] += 1
        return CatCMAwM.Solution(x, z, c, v)

    def solution_for(self, trial: FrozenTrial) -> CatCMAwM.Solution:
        """The solution to tell for a finished trial: its own sample, if that is what ran.

        A proposal that the space's constraints changed (a power of two snapped, a multiple
        fixed) did not run as sampled; it is injected as the configuration that did run, so the
        optimizer never learns from values that were never run.
        """
        key = trial.user_attrs.get(RERUN_KEY, trial.number)
        sol = self.state["pending"].pop(key, None)
        ran = {n: trial.params[n] for n in self.space.names}
        if sol is None or not _same_config(self.decode_solution(sol), ran):
            sol = self.inject_solution(ran)
        return sol

    def observe(self, trial: FrozenTrial, value: float, failed: bool) -> None:
        if any(n not in trial.params for n in self.space.names):
            return
        if not math.isfinite(value):
            value = 1e300
        fitness = value if self.space.direction == "minimize" else -value
        self.state["buffer"].append((self.solution_for(trial), fitness))
        opt = self.optimizer
        while len(self.state["buffer"]) >= opt.population_size:
            batch = self.state["buffer"][: opt.population_size]
            self.state["buffer"] = self.state["buffer"][opt.population_size :]
            tell_generation(opt, list(batch))

    # -- the state, in the units of the hyperparameters ------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Mean, sigma, per-parameter spread and correlations, decoded to native units.

        This is what Centaur shows its LLM; it is also useful on its own for inspection.
        """
        opt = self.optimizer
        out: dict[str, Any] = {"generation": opt.generation, "population_size": opt.population_size}
        if self.enc.gauss:
            mean = np.array(opt._mean, dtype=float)
            cov = np.array(opt._C, dtype=float)
            sigma = float(opt._sigma)
            # Samples are m + sigma * A * N(0, C): A widens integer coordinates (the margin).
            std_unit = sigma * np.asarray(opt._A, dtype=float) * np.sqrt(np.diag(cov))
            out["mean"] = self.enc.decode_gauss(mean)
            out["sigma"] = sigma
            out["spread"] = {
                n: native_std(self.space, n, float(s))
                for n, s in zip(self.enc.gauss, std_unit, strict=True)
            }
            d = np.sqrt(np.diag(cov))
            corr = cov / np.outer(d, d)
            out["correlation"] = {
                "labels": list(self.enc.gauss),
                "matrix": np.round(corr, 3).tolist(),
            }
        if self.enc.cats:
            q = np.array(opt._q, dtype=float)
            out["categorical"] = {
                n: {
                    str(c): round(float(q[i, j]), 3)
                    for j, c in enumerate(self.space.params[n].choices or ())
                }
                for i, n in enumerate(self.enc.cats)
            }
        return out
