"""sklearn tasks: real cross-validation on bundled datasets, measured time, seeded folds."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from centaur_hpo.tasks import sklearn_tasks  # noqa: E402


def test_knn_wine_trains_for_real_and_charges_measured_time() -> None:
    space, fn, info = sklearn_tasks.make_task("knn-wine", seed=0)
    good = fn(space.default_config(), 0)
    bad = fn({"n_neighbors": 50, "weights": "uniform", "p": 1}, 1)
    assert good.outcome == "ok" and 0 <= good.value < 0.15  # scaled kNN is ~97% on wine
    assert bad.value > good.value
    assert good.time > 0 and good.metrics["cv_accuracy"] == pytest.approx(1 - good.value)
    assert info["measured_time"] is True


def test_folds_are_seeded_by_cell_seed_and_trial_number() -> None:
    space, fn, _ = sklearn_tasks.make_task("svc-digits", seed=0)
    c = space.default_config()
    assert fn(c, 0).value == fn(c, 0).value
    values = {round(fn(c, n).value, 9) for n in range(4)}
    assert len(values) > 1


def test_unknown_sklearn_task_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="knn-wine"):
        sklearn_tasks.make_task("xgb-iris", 0)
