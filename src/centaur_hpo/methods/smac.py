"""SMAC3's random-forest Bayesian optimisation (the HPO facade), behind the common interface.

SMAC is an extra (``pip install 'centaur-hpo[smac]'``). Its optimizer object cannot be pickled,
so resume rebuilds it: a new SMAC with the same seed is told every finished trial in trial order.
The random-forest surrogate is then the same as before the crash; only SMAC's internal random
stream differs, which the docs state.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.methods.base import ConfigSampler, finished_trials
from centaur_hpo.space import Config, SearchSpace


def _import_smac() -> Any:
    try:
        import smac  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("--method smac needs SMAC3: pip install 'centaur-hpo[smac]'") from e
    import smac as module

    return module


class SmacSampler(ConfigSampler):
    """SMAC3 HPO facade (random forest + log EI) proposing whole configurations."""

    name = "smac"

    def __init__(self, space: SearchSpace, seed: int | None = None, *, n_initial: int = 10) -> None:
        super().__init__(space, seed)
        _import_smac()
        self.n_initial = n_initial
        self._smac: Any = None
        self._cs: Any = None
        self._told: set[int] = set()
        self._asked: dict[int, Any] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="centaur-smac-")

    def _build(self) -> None:
        from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer
        from smac import HyperparameterOptimizationFacade as Facade
        from smac import Scenario

        cs = ConfigurationSpace(seed=self.seed)
        for p in self.space:
            if p.type in ("categorical", "bool"):
                choices = list(p.choices or ())
                cs.add(Categorical(p.name, [str(c) for c in choices], default=str(p.default)))
            elif p.type == "int":
                cs.add(
                    Integer(p.name, (int(p.low), int(p.high)), log=p.log, default=int(p.default))
                )  # type: ignore[arg-type]
            else:
                cs.add(
                    Float(
                        p.name, (float(p.low), float(p.high)), log=p.log, default=float(p.default)
                    )
                )  # type: ignore[arg-type]
        scenario = Scenario(
            cs,
            deterministic=True,
            n_trials=10**9,
            seed=self.seed if self.seed is not None else 0,
            output_directory=self._dir.name,
        )
        self._cs = cs
        self._smac = Facade(
            scenario,
            target_function=lambda config, seed=0: 0.0,
            overwrite=True,
            logging_level=40,
            initial_design=Facade.get_initial_design(scenario, n_configs=self.n_initial),
        )

    def _to_config(self, values: dict[str, Any]) -> Config:
        out: Config = {}
        for p in self.space:
            v = values[p.name]
            if p.type in ("categorical", "bool"):
                out[p.name] = next(c for c in p.choices or () if str(c) == str(v))
            elif p.type == "int":
                out[p.name] = int(v)
            else:
                out[p.name] = float(v)
        return out

    def _from_config(self, config: Config) -> Any:
        from ConfigSpace import Configuration

        values = {}
        for p in self.space:
            v = config[p.name]
            values[p.name] = str(v) if p.type in ("categorical", "bool") else v
        return Configuration(self._cs, values)

    def sync(self, study: Study) -> None:
        """Tell SMAC every finished trial it has not seen (all of them after a restart)."""
        from smac.runhistory.dataclasses import TrialInfo, TrialValue

        if self._smac is None:
            self._build()
        for t in finished_trials(study):
            if t.number in self._told or any(n not in t.params for n in self.space.names):
                continue
            value = t.values[0] if t.values else math.inf
            cost = value if self.space.direction == "minimize" else -value
            cost = cost if math.isfinite(cost) else 1e12
            info = self._asked.pop(t.number, None)
            if info is None:
                info = TrialInfo(config=self._from_config(dict(t.params)), seed=0)
            self._smac.tell(info, TrialValue(cost=cost))
            self._told.add(t.number)

    def save(self, study: Study) -> None:  # nothing picklable to save: resume replays the history
        return None

    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        info = self._smac.ask()
        self._asked[trial.number] = info
        return self._to_config(dict(info.config))
