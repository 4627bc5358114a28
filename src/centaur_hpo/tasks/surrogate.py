"""Surrogate tasks: learn a trial log, then replay studies on it in milliseconds per trial.

``fit`` learns three models from a :class:`~centaur_hpo.tasks.trial_logs.TrialLog`, each a
tree ensemble on the space's unit encoding (log-warped numbers in [0, 1], one-hot categories):

* the **metric** of successful trials (random forest or extra trees, whichever cross-validates
  better);
* the **probability of failure**, and which failure class (OOM, divergence, ...) it would be;
* the **wall time** of a trial, by outcome.

Their accuracy is measured by k-fold cross-validation, with repeated configurations kept in the
same fold so a repeat cannot leak its own value, and stated when the model is fitted and saved.
Measurement noise is estimated from repeated configurations (pooled within-configuration
standard deviation); a log without repeats falls back to the cross-validated residuals, which is
an upper bound because it includes model error, and says so.

A surrogate trial draws failure, failure class and noise from a generator seeded by the cell
seed and the trial number, so a replayed study is exactly reproducible, and reports the
predicted wall time as its simulated time.

Files: ``MODEL.joblib`` holds the fitted models (a pickle: load only files you trust) and
``MODEL.json`` beside it the space, the cross-validated scores, the noise estimate, the source
log and the library versions, readable without unpickling anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Config, Param, SearchSpace
from centaur_hpo.tasks.fast_forest import FastForest
from centaur_hpo.tasks.trial_logs import MIN_SUCCESSES, LogError, TrialLog, read_log, read_logs

FORMAT = 1
DATA_DIR = Path(__file__).parent / "data"
N_TREES = 100  # per ensemble; fewer (``n_trees``) fit faster, for tests and quick looks
MIN_FOR_TIME_MODEL = 10  # fewer trials of an outcome: its time is their median


# -- encoding ------------------------------------------------------------------------------------
def encode(space: SearchSpace, configs: list[Config]) -> np.ndarray:
    """Configurations as rows of features: unit-scaled numbers, 0/1 bools, one-hot categories."""
    cols: list[np.ndarray] = []
    for p in space:
        if p.type in ("int", "float"):
            cols.append(np.array([space.to_unit(p.name, float(c[p.name])) for c in configs]))
        else:
            choices = list(p.choices or ())
            for choice in choices:
                cols.append(np.array([1.0 if c[p.name] == choice else 0.0 for c in configs]))
    return np.column_stack(cols) if cols else np.zeros((len(configs), 0))


def config_key(config: Config) -> str:
    """A key under which equal configurations (floats to 10 significant digits) collide."""
    return json.dumps(
        {k: (float(f"{v:.10g}") if isinstance(v, float) else v) for k, v in sorted(config.items())},
        default=str,
    )


# -- space <-> JSON ------------------------------------------------------------------------------
def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    return {
        "params": {n: {**p.to_toml_dict(), "default": p.default} for n, p in space.params.items()},
        "metric": space.metric,
        "direction": space.direction,
        "failure_value": space.failure_value,
        "constants": dict(space.constants),
        "constraints": [{"multiple_of": c.target, "of": c.of} for c in space.constraints],
    }


def space_from_dict(d: dict[str, Any]) -> SearchSpace:
    from centaur_hpo.space import MultipleOf

    params = {}
    for name, s in d["params"].items():
        params[name] = Param(
            name,
            s["type"],
            low=s.get("low"),
            high=s.get("high"),
            log=bool(s.get("log")),
            choices=tuple(s["choices"]) if "choices" in s else None,
            default=s.get("default"),
            power_of_two=bool(s.get("power_of_two")),
        )
    return SearchSpace(
        params=params,
        metric=d.get("metric", "value"),
        direction=d.get("direction", "minimize"),
        failure_value=d.get("failure_value"),
        constants=dict(d.get("constants") or {}),
        constraints=[MultipleOf(c["multiple_of"], c["of"]) for c in d.get("constraints") or []],
    )


# -- the fitted surrogate ------------------------------------------------------------------------
@dataclass
class TimeModel:
    """Wall time of one outcome class: a regressor, or a constant where data are few."""

    model: Any = None
    constant: float = 0.0

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(len(x), self.constant)
        return np.maximum(self.model.predict(x), 0.0)


@dataclass
class Surrogate:
    """Three fitted models and what is known about their accuracy (``meta``)."""

    space: SearchSpace
    metric_model: Any
    failure_model: Any | None  # classifier of failed (1) vs ok (0); None: constant rate
    failure_rate: float
    class_model: Any | None  # classifier over failure classes; None: class_weights
    class_weights: dict[str, float]
    time_models: dict[str, TimeModel]
    noise_sd: float
    meta: dict[str, Any] = field(default_factory=dict)
    fast: dict[str, FastForest] | None = field(default=None, repr=False, compare=False)

    def compiled(self) -> dict[str, FastForest]:
        """The ensembles as :class:`FastForest` (built once; scikit-learn's predict is slow)."""
        if self.fast is None:
            fast = {"metric": FastForest.from_sklearn(self.metric_model)}
            if self.failure_model is not None:
                fast["failure"] = FastForest.from_sklearn(self.failure_model)
            if self.class_model is not None:
                fast["class"] = FastForest.from_sklearn(self.class_model)
            for outcome, tm in self.time_models.items():
                if tm.model is not None:
                    fast[f"time:{outcome}"] = FastForest.from_sklearn(tm.model)
            self.fast = fast
        return self.fast

    def predict(self, configs: list[Config]) -> np.ndarray:
        """Mean metric of successful runs at ``configs`` (no noise)."""
        return self.compiled()["metric"].predict(encode(self.space, configs))

    def failure_probability(self, configs: list[Config]) -> np.ndarray:
        if self.failure_model is None:
            return np.full(len(configs), self.failure_rate)
        proba = self.compiled()["failure"].predict_proba(encode(self.space, configs))
        classes = list(self.failure_model.classes_)
        return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(configs))

    def simulate(self, config: Config, rng: np.random.Generator) -> SimOutcome:
        x = encode(self.space, [config])
        p_fail = float(self.failure_probability([config])[0])
        if rng.random() < p_fail:
            if self.class_model is not None:
                proba = self.compiled()["class"].predict_proba(x)[0]
                names = [str(c) for c in self.class_model.classes_]
            else:
                names = list(self.class_weights)
                proba = np.array([self.class_weights[n] for n in names])
            outcome = names[int(rng.choice(len(names), p=proba / proba.sum()))]
            seconds = self._time(outcome, x)
            return SimOutcome(
                outcome,
                None,
                seconds,
                {"p_failure": p_fail},
                f"simulated {outcome} (surrogate failure probability {p_fail:.2f})",
            )
        mean = float(self.compiled()["metric"].predict(x)[0])
        value = mean + self.noise_sd * float(rng.standard_normal())
        return SimOutcome(
            "ok",
            value,
            self._time("ok", x),
            {"predicted_mean": mean, "p_failure": p_fail, self.space.metric: value},
        )

    def _time(self, outcome: str, x: np.ndarray) -> float:
        if outcome not in self.time_models:
            outcome = "ok"
        fast = self.compiled().get(f"time:{outcome}")
        if fast is not None:
            return max(0.0, float(fast.predict(x)[0]))
        return float(self.time_models.get(outcome, TimeModel()).constant)

    # -- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``path`` (joblib) and the JSON metadata beside it; returns both paths."""
        import joblib

        path = Path(path)
        if path.suffix != ".joblib":
            path = path.with_name(path.name + ".joblib")
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": FORMAT, "surrogate": replace(self, fast=None)}, path, compress=3)
        meta_path = path.with_suffix(".json")
        meta_path.write_text(json.dumps(self.meta, indent=2, default=str) + "\n")
        return path, meta_path


def metadata_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load(path: str | Path) -> Surrogate:
    """Load a saved surrogate; warns when it was fitted with another scikit-learn version."""
    import joblib
    import sklearn

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no surrogate model at {path}")
    meta_file = metadata_path(path)
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    fitted_with = (meta.get("versions") or {}).get("scikit-learn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's own version warning: replaced by ours
        try:
            blob = joblib.load(path)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means: refit
            raise ValueError(
                f"cannot load the surrogate {path} ({type(e).__name__}: {e}); it was fitted with "
                f"scikit-learn {fitted_with or '?'}; refit it with `centaur surrogate fit`"
            ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a centaur surrogate model (format {FORMAT})")
    if fitted_with and fitted_with != sklearn.__version__:
        warnings.warn(
            f"{path} was fitted with scikit-learn {fitted_with}, this is {sklearn.__version__}; "
            "refit it with `centaur surrogate fit` if its predictions look wrong",
            stacklevel=2,
        )
    surrogate: Surrogate = blob["surrogate"]
    surrogate.meta = meta or surrogate.meta
    return surrogate


# -- fitting -------------------------------------------------------------------------------------
def _forest(kind: str, seed: int, n_trees: int = N_TREES) -> Any:
    from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

    cls = RandomForestRegressor if kind == "random_forest" else ExtraTreesRegressor
    return cls(n_estimators=n_trees, max_features=0.6, min_samples_leaf=1, random_state=seed)


def _classifier(seed: int, n_trees: int = N_TREES) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_trees, min_samples_leaf=2, random_state=seed)


def _folds(n: int, folds: int, groups: list[str], seed: int, y: Any = None) -> Any:
    """Group-aware folds: every repeat of a configuration lands in the same fold."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    k = max(2, min(folds, len(set(groups))))
    if y is not None:
        counts = np.bincount(np.asarray(y, dtype=int))
        k = max(2, min(k, int(counts[counts > 0].min())))
        return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed), k
    return GroupKFold(n_splits=k, shuffle=True, random_state=seed), k


def _repeat_noise(log: TrialLog) -> tuple[float | None, int, int]:
    """Pooled within-configuration sd of successful repeats: (sd, degrees of freedom, configs)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for c, o, v in zip(log.configs, log.outcomes, log.values, strict=True):
        if o == "ok" and v is not None:
            groups[config_key(c)].append(v)
    ss, df, n_rep = 0.0, 0, 0
    for vals in groups.values():
        if len(vals) >= 2:
            arr = np.asarray(vals)
            ss += float(((arr - arr.mean()) ** 2).sum())
            df += len(vals) - 1
            n_rep += 1
    return (math.sqrt(ss / df) if df >= 2 else None), df, n_rep


def fit(
    log: TrialLog,
    *,
    folds: int = 5,
    seed: int = 0,
    n_trees: int = N_TREES,
    noise_sd: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Surrogate:
    """Fit the three models on ``log`` and cross-validate each (scores in ``meta['cv']``).

    ``noise_sd`` states the measurement noise instead of estimating it (for a log without
    repeated configurations whose noise is known from elsewhere).
    """
    from sklearn.metrics import brier_score_loss, mean_absolute_error, r2_score, roc_auc_score
    from sklearn.model_selection import cross_val_predict

    say = progress or (lambda _s: None)
    if log.n_ok < MIN_SUCCESSES:
        raise LogError(
            f"{log.source}: only {log.n_ok} successful trials; a surrogate needs at least "
            f"{MIN_SUCCESSES} to be fitted and cross-validated"
        )
    space = log.space
    x_all = encode(space, log.configs)
    keys = [config_key(c) for c in log.configs]
    ok = np.array([o == "ok" for o in log.outcomes])
    y = np.array([v for v, good in zip(log.values, ok, strict=True) if good], dtype=float)
    x_ok, keys_ok = x_all[ok], [k for k, good in zip(keys, ok, strict=True) if good]
    cv: dict[str, Any] = {}

    # 1. metric of successful runs: pick the forest that cross-validates better
    splitter, k = _folds(len(y), folds, keys_ok, seed)
    best_kind, best_pred, best_mae = "", None, math.inf
    for kind in ("random_forest", "extra_trees"):
        pred = cross_val_predict(_forest(kind, seed, n_trees), x_ok, y, cv=splitter, groups=keys_ok)
        mae = float(mean_absolute_error(y, pred))
        if mae < best_mae:
            best_kind, best_pred, best_mae = kind, pred, mae
    assert best_pred is not None
    resid = y - best_pred
    cv["metric"] = {
        "model": best_kind,
        "folds": k,
        "n": int(len(y)),
        "r2": float(r2_score(y, best_pred)) if len(y) > 1 and np.ptp(y) > 0 else None,
        "mae": best_mae,
        "rmse": float(np.sqrt(np.mean(resid**2))),
        "baseline_mae": float(np.mean(np.abs(y - np.median(y)))),
    }
    metric_model = _forest(best_kind, seed, n_trees).fit(x_ok, y)

    # 2. failure probability and class
    failed = ~ok
    n_fail = int(failed.sum())
    failure_model = None
    failure_rate = n_fail / len(ok)
    if 2 <= n_fail <= len(ok) - 2:
        labels = failed.astype(int)
        splitter, kf = _folds(len(ok), folds, keys, seed, labels)
        proba = cross_val_predict(
            _classifier(seed, n_trees),
            x_all,
            labels,
            cv=splitter,
            groups=keys,
            method="predict_proba",
        )[:, 1]
        cv["failure"] = {
            "folds": kf,
            "n": int(len(ok)),
            "failure_rate": failure_rate,
            "auc": float(roc_auc_score(labels, proba)),
            "brier": float(brier_score_loss(labels, proba)),
            "baseline_brier": failure_rate * (1 - failure_rate),
        }
        if cv["failure"]["brier"] < cv["failure"]["baseline_brier"]:
            failure_model = _classifier(seed, n_trees).fit(x_all, labels)
        else:
            cv["failure"]["note"] = (
                "the classifier did not beat the constant failure rate in CV (Brier): the "
                "constant rate is used"
            )
    else:
        cv["failure"] = {
            "n": int(len(ok)),
            "failure_rate": failure_rate,
            "note": "too few failures (or successes) to model: a constant failure rate is used",
        }
    fail_classes = [o for o in log.outcomes if o != "ok"]
    class_weights = {
        c: fail_classes.count(c) / len(fail_classes) for c in sorted(set(fail_classes))
    }
    class_model = None
    if len(class_weights) >= 2 and n_fail >= 10:
        class_model = _classifier(seed, n_trees).fit(x_all[failed], np.array(fail_classes))
    cv["failure_classes"] = class_weights

    # 3. wall time by outcome
    times = np.asarray(log.times, dtype=float)
    outcomes = np.asarray(log.outcomes)
    time_models: dict[str, TimeModel] = {}
    cv["time"] = {}
    for outcome in ["ok", *sorted(class_weights)]:
        mask = outcomes == outcome
        t, xo = times[mask], x_all[mask]
        groups = [kk for kk, m in zip(keys, mask, strict=True) if m]
        if mask.sum() >= MIN_FOR_TIME_MODEL and np.ptp(t) > 0 and len(set(groups)) >= 2:
            splitter, kt = _folds(len(t), folds, groups, seed)
            pred = cross_val_predict(
                _forest("random_forest", seed, n_trees), xo, t, cv=splitter, groups=groups
            )
            cv["time"][outcome] = {
                "model": "random_forest",
                "folds": kt,
                "n": int(mask.sum()),
                "mae": float(np.mean(np.abs(t - pred))),
                "mean": float(t.mean()),
            }
            time_models[outcome] = TimeModel(_forest("random_forest", seed, n_trees).fit(xo, t))
        else:
            med = float(np.median(t))
            cv["time"][outcome] = {
                "model": "median",
                "n": int(mask.sum()),
                "mae": float(np.mean(np.abs(t - med))),
                "mean": float(t.mean()),
                "note": "in-sample (too few trials to cross-validate)",
            }
            time_models[outcome] = TimeModel(None, med)

    # noise
    sd, df, n_rep = _repeat_noise(log)
    if noise_sd is not None:
        noise = {"sd": float(noise_sd), "method": "stated by the user (--noise-sd)"}
        if sd is not None:
            noise["repeats_estimate"] = sd
    elif sd is not None:
        noise = {"sd": sd, "method": "repeated configurations", "df": df, "configurations": n_rep}
    else:
        noise = {
            "sd": cv["metric"]["rmse"],
            "method": "cross-validation residuals (no repeated configurations in the log; an "
            "upper bound, since it includes the model's own error)",
        }
    import sklearn

    from centaur_hpo import __version__

    meta = {
        "format": FORMAT,
        "kind": "centaur-surrogate",
        "space": space_to_dict(space),
        "source": log.source,
        "source_in_package": _in_package(log.source),
        "source_sha256": _sha256(log.source),
        "sources": {src: _sha256(src) for src in log.sources} or None,
        "n_trials": len(log),
        "n_ok": int(ok.sum()),
        "best_logged": float(y.min() if space.direction == "minimize" else y.max()),
        "outcomes": {o: log.outcomes.count(o) for o in sorted(set(log.outcomes))},
        "cv": cv,
        "noise": noise,
        "notes": list(log.notes),
        "fitted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "n_trees": n_trees,
        "versions": {
            "centaur-hpo": __version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    surrogate = Surrogate(
        space=space,
        metric_model=metric_model,
        failure_model=failure_model,
        failure_rate=failure_rate,
        class_model=class_model,
        class_weights=class_weights,
        time_models=time_models,
        noise_sd=float(noise["sd"]),
        meta=meta,
    )
    say(describe_scores(meta))
    return surrogate


def _in_package(source: str) -> str | None:
    """The log's path relative to the installed package, when it ships inside it."""
    package = Path(__file__).resolve().parents[1]
    try:
        return str(Path(source).resolve().relative_to(package))
    except ValueError:
        return None


def _sha256(source: str) -> str | None:
    p = Path(source)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def describe_scores(meta: dict[str, Any]) -> str:
    """The cross-validated accuracy as a few human-readable lines."""
    cv = meta["cv"]
    m = cv["metric"]
    r2 = f"R2 {m['r2']:.3f}, " if m.get("r2") is not None else ""
    lines = [
        f"log: {meta['n_trials']} trials ({meta['n_ok']} ok; {meta['outcomes']}) from {meta['source']}",
        f"metric ({m['model']}, {m['folds']}-fold CV on {m['n']} successes): {r2}"
        f"MAE {m['mae']:.4g}, RMSE {m['rmse']:.4g} (predicting the median: MAE {m['baseline_mae']:.4g})",
    ]
    f = cv["failure"]
    if "auc" in f:
        lines.append(
            f"failure ({f['folds']}-fold CV, rate {f['failure_rate']:.1%}): AUC {f['auc']:.3f}, "
            f"Brier {f['brier']:.4f} (constant rate: {f['baseline_brier']:.4f})"
            + (f"; {f['note']}" if "note" in f else "")
        )
    else:
        lines.append(f"failure: rate {f['failure_rate']:.1%} ({f['note']})")
    if cv.get("failure_classes"):
        lines.append(
            "failure classes: "
            + ", ".join(f"{c} {w:.0%}" for c, w in cv["failure_classes"].items())
        )
    for outcome, t in cv["time"].items():
        how = f"{t['folds']}-fold CV" if "folds" in t else "in-sample median"
        lines.append(
            f"time of {outcome} trials ({t['model']}, {how}, n={t['n']}): MAE {t['mae']:.3g} s "
            f"(mean {t['mean']:.3g} s)"
        )
    noise = meta["noise"]
    extra = (
        f" ({noise['configurations']} configurations, {noise['df']} degrees of freedom)"
        if "df" in noise
        else ""
    )
    lines.append(f"measurement noise sd {noise['sd']:.4g} from {noise['method']}{extra}")
    lines.extend(f"note: {n}" for n in meta.get("notes", []))
    return "\n".join(lines)


def fit_log(
    source: str | Path | list[str | Path], output: str | Path, **kwargs: Any
) -> tuple[Surrogate, Path, Path]:
    """Read (one log or several with one space), fit and save: ``centaur surrogate fit``."""
    read_keys = (
        "study",
        "space",
        "value_column",
        "time_column",
        "params",
        "method",
        "constant_time",
    )
    command = kwargs.pop("command", None)
    sources = list(source) if isinstance(source, list | tuple) else [source]
    log = read_logs(sources, **{k: kwargs.pop(k) for k in read_keys if k in kwargs})
    surrogate = fit(log, **kwargs)
    if command:
        surrogate.meta["command"] = command
    path, meta_path = surrogate.save(output)
    return surrogate, path, meta_path


# -- tasks ---------------------------------------------------------------------------------------
_LOADED: dict[str, Surrogate] = {}
_LOAD_LOCK = threading.Lock()


def shipped_models() -> list[str]:
    """Names of the surrogates shipped with the package (``surrogate:NAME``)."""
    if not DATA_DIR.is_dir():
        return []
    return sorted(p.stem for p in DATA_DIR.glob("*.joblib") if p.with_suffix(".json").is_file())


def resolve(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix != ".joblib" and p.with_name(p.name + ".joblib").is_file():
        p = p.with_name(p.name + ".joblib")
    if p.is_file():
        return p.resolve()
    if name_or_path in shipped_models():
        return DATA_DIR / f"{name_or_path}.joblib"
    raise ValueError(
        f"surrogate {name_or_path!r}: no such model file and no shipped surrogate of that name "
        f"(shipped: {', '.join(shipped_models()) or 'none'}); fit one with "
        "`centaur surrogate fit LOG -o MODEL.joblib`"
    )


def get(name_or_path: str) -> Surrogate:
    """A loaded surrogate, cached per process (every worker loads it once)."""
    path = resolve(name_or_path)
    key = str(path)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = load(path)
            except ValueError:
                refit = _refit_shipped(path)
                if refit is None:
                    raise
                _LOADED[key] = refit
        return _LOADED[key]


def _refit_shipped(path: Path) -> Surrogate | None:
    """A shipped model this scikit-learn cannot unpickle is refitted from the log it ships with."""
    meta_file = metadata_path(path)
    if path.parent.resolve() != DATA_DIR.resolve() or not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    rel = meta.get("source_in_package")
    if not rel:
        return None
    log_path = Path(__file__).resolve().parents[1] / rel
    if not log_path.is_file():
        return None
    warnings.warn(
        f"{path.name} cannot be loaded by this scikit-learn; refitting it from {rel}",
        stacklevel=3,
    )
    log = read_log(log_path, space=space_from_dict(meta["space"]))
    return fit(log, seed=int(meta.get("seed", 0)), n_trees=int(meta.get("n_trees", N_TREES)))


def _model_label(name_or_path: str) -> str:
    """How a study records its model: the shipped name, else the file's absolute path."""
    path = resolve(name_or_path)
    return f"shipped:{path.stem}" if path.parent == DATA_DIR else str(path)


def make_task(name_or_path: str, seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    surrogate = get(name_or_path)
    space = surrogate.space
    if space.failure_value is None and surrogate.meta.get("space", {}).get("failure_value"):
        space = replace(space, failure_value=surrogate.meta["space"]["failure_value"])

    def fn(config: Config, number: int) -> SimOutcome:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(number), 0x5266])
        return surrogate.simulate(space.repair(config), rng)

    meta = surrogate.meta
    cv = meta.get("cv", {})
    info = {
        "description": f"surrogate of {meta.get('source', '?')} ({meta.get('n_trials', '?')} "
        f"trials): metric {cv.get('metric', {}).get('model', '?')}, CV MAE "
        f"{cv.get('metric', {}).get('mae', float('nan')):.4g}; noise sd {surrogate.noise_sd:.4g}",
        "model": _model_label(name_or_path),
        "best_logged": meta.get("best_logged"),
        "cv_metric_mae": cv.get("metric", {}).get("mae"),
        "cv_metric_r2": cv.get("metric", {}).get("r2"),
        "cv_failure_auc": cv.get("failure", {}).get("auc"),
        "noise_sd": surrogate.noise_sd,
        "noise_method": meta.get("noise", {}).get("method"),
    }
    return space, fn, info


__all__ = [
    "LogError",
    "Surrogate",
    "describe_scores",
    "encode",
    "fit",
    "fit_log",
    "get",
    "load",
    "make_task",
    "read_log",
    "shipped_models",
]
