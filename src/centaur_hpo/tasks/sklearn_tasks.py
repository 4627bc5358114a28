"""Small real tuning tasks on scikit-learn's bundled datasets: ``sklearn:<name>``.

Unlike the other simulated tasks these *train*: each trial runs k-fold cross-validation of a real
estimator on a dataset that ships inside scikit-learn (no download), and is charged the fit and
score time it measured. The value is the cross-validated error rate (1 - accuracy, minimized).
The folds are shuffled with a seed drawn from the cell seed and trial number, so a repeated
configuration sees real split-to-split noise and a study replays exactly (up to timing).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from centaur_hpo.evaluate import SimOutcome
from centaur_hpo.space import Config, Param, SearchSpace


@dataclass(frozen=True)
class SklearnTask:
    """An estimator family, its dataset and its search space."""

    dataset: str
    params: tuple[Param, ...]
    build: Callable[[Config], Any]
    folds: int = 3
    description: str = ""


def _svc(c: Config) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return make_pipeline(StandardScaler(), SVC(C=c["C"], gamma=c["gamma"], kernel=c["kernel"]))


def _hgb(c: Config) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=c["learning_rate"],
        max_leaf_nodes=c["max_leaf_nodes"],
        min_samples_leaf=c["min_samples_leaf"],
        l2_regularization=c["l2_regularization"],
        max_iter=c["max_iter"],
        early_stopping=False,
        random_state=0,
    )


def _knn(c: Config) -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        KNeighborsClassifier(n_neighbors=c["n_neighbors"], weights=c["weights"], p=c["p"]),
    )


TASKS: dict[str, SklearnTask] = {
    "svc-digits": SklearnTask(
        "digits",
        (
            Param("C", "float", low=1e-3, high=1e3, log=True, default=1.0),
            Param("gamma", "float", low=1e-5, high=1.0, log=True, default=1e-3),
            Param("kernel", "categorical", choices=("rbf", "sigmoid"), default="rbf"),
        ),
        _svc,
        description="SVC on load_digits (1,797 8x8 images, 10 classes), 3-fold CV",
    ),
    "hgb-breast_cancer": SklearnTask(
        "breast_cancer",
        (
            Param("learning_rate", "float", low=1e-3, high=1.0, log=True, default=0.1),
            Param("max_leaf_nodes", "int", low=4, high=64, log=True, default=31),
            Param("min_samples_leaf", "int", low=1, high=64, log=True, default=20),
            Param("l2_regularization", "float", low=1e-6, high=10.0, log=True, default=1e-6),
            Param("max_iter", "int", low=10, high=100, log=True, default=50),
        ),
        _hgb,
        description="HistGradientBoosting on load_breast_cancer (569 samples), 3-fold CV",
    ),
    "knn-wine": SklearnTask(
        "wine",
        (
            Param("n_neighbors", "int", low=1, high=50, log=True, default=5),
            Param("weights", "categorical", choices=("uniform", "distance"), default="uniform"),
            Param("p", "int", low=1, high=2, default=2),
        ),
        _knn,
        description="k-nearest neighbours on load_wine (178 samples, 3 classes), 3-fold CV",
    ),
}


def _load(dataset: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    data = getattr(datasets, f"load_{dataset}")()
    return data.data, data.target


def make_task(name: str, seed: int) -> tuple[SearchSpace, Any, dict[str, Any]]:
    if name not in TASKS:
        raise ValueError(f"unknown task sklearn:{name}; known: {', '.join(sorted(TASKS))}")
    try:
        from sklearn.model_selection import StratifiedKFold, cross_validate
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ValueError("sklearn tasks need scikit-learn: pip install scikit-learn") from e
    task = TASKS[name]
    x, y = _load(task.dataset)
    space = SearchSpace(
        params={p.name: p for p in task.params}, metric="cv_error", direction="minimize"
    )

    def fn(config: Config, number: int) -> SimOutcome:
        split_seed = int(
            np.random.default_rng([int(seed) & 0xFFFFFFFF, int(number)]).integers(2**31)
        )
        folds = StratifiedKFold(task.folds, shuffle=True, random_state=split_seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = cross_validate(task.build(config), x, y, cv=folds, error_score="raise")
        except (ValueError, ArithmeticError) as e:
            return SimOutcome("crash", None, 0.0, {}, f"{type(e).__name__}: {e}")
        seconds = float(np.sum(scores["fit_time"]) + np.sum(scores["score_time"]))
        accuracy = float(np.mean(scores["test_score"]))
        return SimOutcome(
            "ok",
            1.0 - accuracy,
            seconds,
            {"cv_error": 1.0 - accuracy, "cv_accuracy": accuracy, "fit_seconds": seconds},
        )

    info = {
        "description": task.description + " (real training; time is measured fit+score time)",
        "dataset": task.dataset,
        "folds": task.folds,
        "measured_time": True,
    }
    return space, fn, info
