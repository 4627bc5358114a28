"""FastForest predicts exactly what scikit-learn predicts, for regressors and classifiers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.ensemble import (  # noqa: E402
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from centaur_hpo.tasks.fast_forest import FastForest  # noqa: E402


@pytest.mark.parametrize("cls", [RandomForestRegressor, ExtraTreesRegressor])
def test_regressor_predictions_are_identical(cls: type) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((200, 6))
    y = np.sin(6 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * rng.standard_normal(200)
    model = cls(n_estimators=25, random_state=0).fit(x, y)
    q = rng.random((300, 6))
    np.testing.assert_array_equal(FastForest.from_sklearn(model).predict(q), model.predict(q))


def test_classifier_probabilities_are_identical_for_three_classes() -> None:
    rng = np.random.default_rng(1)
    x = rng.random((300, 4))
    y = np.where(x[:, 0] > 0.6, "oom", np.where(x[:, 1] > 0.7, "diverged", "ok"))
    model = RandomForestClassifier(n_estimators=20, min_samples_leaf=2, random_state=0).fit(x, y)
    fast = FastForest.from_sklearn(model)
    q = rng.random((100, 4))
    np.testing.assert_allclose(fast.predict_proba(q), model.predict_proba(q), atol=1e-12)
    assert list(fast.classes) == list(model.classes_)
