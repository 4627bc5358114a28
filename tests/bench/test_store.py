"""The buffered benchmark storage: what it writes back is exactly what ran, in order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from centaur_hpo.bench.store import BufferedStudy, copy_finished, open_bench_storage

DISTS = {"x": FloatDistribution(-1, 1), "c": CategoricalDistribution(["a", "b"])}


def _content(storage, name: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    sid = storage.get_study_id_from_name(name)
    return [
        (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs)
        for t in storage.get_all_trials(sid)
    ]


def test_flush_writes_finished_trials_in_order_and_attributes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    backing = open_bench_storage(url)
    buf = BufferedStudy(backing, "cell", "minimize")
    study = optuna.load_study(
        study_name="cell", storage=buf.memory, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    for i in range(5):
        t = study.ask(DISTS)
        t.set_user_attr("outcome", "ok" if i != 2 else "oom")
        t.set_user_attr("metrics", {"loss": i * 0.5})
        if i == 2:
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, i * 0.5)
    running = study.ask(DISTS)  # unfinished: must not be written, nor anything after it
    study.set_user_attr("note", "x")
    buf.memory.set_study_system_attr(buf.memory_id, "centaur:k", {"a": 1})
    assert buf.flush() == 5
    assert _content(backing, "cell") == _content(buf.memory, "cell")[:5]
    sid = backing.get_study_id_from_name("cell")
    assert backing.get_study_user_attrs(sid) == {"note": "x"}
    assert backing.get_study_system_attrs(sid)["centaur:k"] == {"a": 1}
    study.tell(running, 9.0)
    assert buf.flush() == 1 and buf.flush() == 0
    assert _content(backing, "cell") == _content(buf.memory, "cell")
    # a fresh buffer over the same study starts from what was written
    again = BufferedStudy(backing, "cell", "minimize")
    assert again.n_written == 6
    assert _content(again.memory, "cell") == _content(backing, "cell")
    # the written study is an ordinary Optuna study
    loaded = optuna.load_study(study_name="cell", storage=url)
    assert loaded.best_value == 0.0 and len(loaded.trials) == 6


def test_wal_and_copy_finished(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    backing = open_bench_storage(f"sqlite:///{db}")
    study = optuna.create_study(storage=backing, study_name="src")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    study.ask()  # left running: not copied
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    dst = optuna.storages.InMemoryStorage()
    copy_finished(backing, "src", dst)
    assert [t.values for t in dst.get_all_trials(dst.get_study_id_from_name("src"))] == [
        t.values for t in study.trials[:3]
    ]
