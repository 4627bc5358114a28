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


def _forest(scenario: Any) -> Any:
    """The HPO facade's random forest, with two settings changed for speed, not for what it models.

    * ``n_jobs=1``: SMAC's default (-1) spreads the ten trees over a joblib thread pool for every
      prediction. The acquisition search predicts thousands of small batches per proposal and
      waiting on the pool cost more than the trees themselves (40 % of a profiled cell on
      2 cores); with several cells or workers per machine the pools also oversubscribe the cores.
    * ``max_leaf_nodes=None``: SMAC passes 2**20, an unreachable limit that only switches
      scikit-learn to its best-first tree builder, which reserves room for that many nodes:
      about 90 ms per tree instead of 1 ms. Without the limit the trees grow depth-first to the
      same stopping rules (minimum samples per split and leaf).

    See benchmarks/RESULTS.md for the measured effect.
    """
    from smac import HyperparameterOptimizationFacade as Facade

    model = Facade.get_model(scenario)
    options = getattr(model, "_rf_opts", None)  # SMAC >= 2.3 (scikit-learn forest)
    if isinstance(options, dict):
        options["n_jobs"] = 1
        if options.get("max_leaf_nodes", 0) >= 2**20:
            options["max_leaf_nodes"] = None
    return model


def _maximizer(scenario: Any) -> Any:
    """The HPO facade's acquisition search, made reproducible under a fixed seed.

    SMAC's local search collects its start points in a ``set`` of configurations, whose order
    follows Python's per-process string hashing; the order decides which start point consumes
    which random numbers, so two runs with the same seed proposed different configurations
    (measured: 59 vs 60 trials and best 0.9876 vs 0.9792 on autoresearch-sim, 4 h). The start
    points are the same here, taken in a fixed order.
    """
    from smac import HyperparameterOptimizationFacade as Facade
    from smac.acquisition.maximizer.local_search import LocalSearch

    class OrderedLocalSearch(LocalSearch):
        def _get_init_points_from_previous_configs(self, *args: Any, **kwargs: Any) -> list:
            points = super()._get_init_points_from_previous_configs(*args, **kwargs)
            return sorted(points, key=lambda c: tuple(c.get_array().tolist()))

    maximizer = Facade.get_acquisition_maximizer(scenario)
    old = getattr(maximizer, "_local_search", None)
    if isinstance(old, LocalSearch):
        maximizer._local_search = OrderedLocalSearch(
            configspace=scenario.configspace,
            acquisition_function=old._acquisition_function,
            max_steps=old._max_steps,
            n_steps_plateau_walk=old._n_steps_plateau_walk,
            seed=scenario.seed,
            n_jobs=1,
        )
    return maximizer


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
            model=_forest(scenario),
            acquisition_maximizer=_maximizer(scenario),
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
            # save=False: SMAC would rewrite its whole run history as JSON into its (temporary)
            # output folder on every tell, quadratic in the trials (16 of 18 s when a resumed
            # 300-trial study is replayed); the study's storage is the record.
            self._smac.tell(info, TrialValue(cost=cost), save=False)
            self._told.add(t.number)

    def save(self, study: Study) -> None:  # nothing picklable to save: resume replays the history
        return None

    def propose(self, study: Study, trial: FrozenTrial) -> Config:
        info = self._smac.ask()
        self._asked[trial.number] = info
        return self._to_config(dict(info.config))
