"""Surrogates: fitted on a log, they reproduce the log within their stated CV error and replay fast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests.tasks import sim_logs  # noqa: E402

from centaur_hpo.tasks import autoresearch_sim as ar  # noqa: E402
from centaur_hpo.tasks import surrogate  # noqa: E402
from centaur_hpo.tasks.simulated import get_simulated_task  # noqa: E402
from centaur_hpo.tasks.trial_logs import read_log  # noqa: E402

TREES = 30


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[surrogate.Surrogate, Path, object]:
    folder = tmp_path_factory.mktemp("surrogate")
    log_path = sim_logs.write_csv(folder / "log.csv", sim_logs.records(110))
    log = read_log(log_path, space="autoresearch")
    model = surrogate.fit(log, n_trees=TREES, folds=5)
    path, _ = model.save(folder / "model.joblib")
    return model, path, log


def test_reproduces_the_logs_own_values_within_the_stated_cv_error(fitted) -> None:  # type: ignore[no-untyped-def]
    model, path, log = fitted
    ok = [i for i, o in enumerate(log.outcomes) if o == "ok"]
    logged = np.array([log.values[i] for i in ok])
    predicted = model.predict([log.configs[i] for i in ok])
    stated = model.meta["cv"]["metric"]
    assert np.mean(np.abs(predicted - logged)) <= stated["mae"]
    # the same through the task, with its simulated noise, from the saved file
    space, fn, info = get_simulated_task(f"surrogate:{path}", seed=0)
    sims = [fn(log.configs[i], n) for n, i in enumerate(ok)]
    sim_ok = [(s.value, v) for s, v in zip(sims, logged, strict=True) if s.outcome == "ok"]
    assert len(sim_ok) > 0.8 * len(ok)
    err = np.mean([abs(a - b) for a, b in sim_ok])
    assert err <= stated["mae"] + model.noise_sd
    assert info["cv_metric_mae"] == stated["mae"]


def test_noise_comes_from_repeated_configurations(fitted) -> None:  # type: ignore[no-untyped-def]
    model, _, _ = fitted
    noise = model.meta["noise"]
    assert noise["method"] == "repeated configurations" and noise["df"] >= 5
    assert ar.NOISE_SD / 2.5 < noise["sd"] < ar.NOISE_SD * 2.5  # the landscape's true 0.0004


def test_failure_and_time_models_learn_the_log(fitted) -> None:  # type: ignore[no-untyped-def]
    model, _, log = fitted
    failed = [c for c, o in zip(log.configs, log.outcomes, strict=True) if o != "ok"]
    good = [c for c, o in zip(log.configs, log.outcomes, strict=True) if o == "ok"]
    assert failed, "the generated log should hold failures"
    assert model.failure_probability(failed).mean() > model.failure_probability(good).mean()
    cv = model.meta["cv"]
    assert "auc" in cv["failure"] and 0 <= cv["failure"]["brier"] <= 1
    assert cv["time"]["ok"]["mae"] < 5.0  # successes take ~330 s each
    rng = np.random.default_rng(0)
    out = model.simulate(ar.DEFAULTS, rng)
    assert out.outcome == "ok" and 320 < out.time < 340


def test_replay_is_seeded_and_takes_milliseconds(fitted) -> None:  # type: ignore[no-untyped-def]
    _, path, log = fitted
    _, fn, _ = get_simulated_task(f"surrogate:{path}", seed=1)
    _, fn_again, _ = get_simulated_task(f"surrogate:{path}", seed=1)
    _, fn_other, _ = get_simulated_task(f"surrogate:{path}", seed=2)
    c = log.configs[0]
    assert fn(c, 3) == fn_again(c, 3)
    assert fn(c, 3).value != fn(c, 4).value or fn(c, 3).outcome != "ok"
    assert [fn(c, n).value for n in range(5)] != [fn_other(c, n).value for n in range(5)]
    start = time.perf_counter()
    for n in range(100):
        fn(log.configs[n % len(log)], n)
    assert (time.perf_counter() - start) / 100 < 0.02


def test_metadata_names_space_versions_and_scores(fitted) -> None:  # type: ignore[no-untyped-def]
    import json

    _, path, _ = fitted
    meta = json.loads(surrogate.metadata_path(path).read_text())
    assert set(meta["space"]["params"]) == set(ar.DEFAULTS)
    assert meta["space"]["failure_value"] == 100.0
    assert {"scikit-learn", "numpy", "centaur-hpo"} <= set(meta["versions"])
    assert {"metric", "failure", "time"} <= set(meta["cv"])
    assert meta["source_sha256"]
    loaded = surrogate.load(path)
    assert loaded.space.names == list(ar.DEFAULTS)


def test_unknown_surrogate_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ValueError, match="surrogate fit"):
        get_simulated_task("surrogate:no-such-model", 0)


CPU_GPT_LOG = Path(surrogate.__file__).parent / "cpu_gpt" / "trials.csv"


def test_shipped_cpu_gpt_surrogate_is_fitted_on_the_committed_log() -> None:
    """The shipped model must match the committed log byte for byte, and reproduce it."""
    if not CPU_GPT_LOG.is_file():
        pytest.skip("the cpu-gpt trial log is not in this checkout")
    assert "cpu-gpt" in surrogate.shipped_models(), (
        "refit: centaur surrogate fit src/centaur_hpo/tasks/cpu_gpt/trials.csv --space cpu-gpt "
        "-o src/centaur_hpo/tasks/data/cpu-gpt.joblib"
    )
    import hashlib

    model = surrogate.get("cpu-gpt")
    assert model.meta["source_sha256"] == hashlib.sha256(CPU_GPT_LOG.read_bytes()).hexdigest()
    log = read_log(CPU_GPT_LOG, space=model.space)
    ok = [i for i, o in enumerate(log.outcomes) if o == "ok"]
    predicted = model.predict([log.configs[i] for i in ok])
    logged = np.array([log.values[i] for i in ok])
    assert np.mean(np.abs(predicted - logged)) <= model.meta["cv"]["metric"]["mae"]
    space, fn, _ = get_simulated_task("surrogate:cpu-gpt", seed=0)
    assert fn(space.default_config(), 0).time > 0
