"""The study lock and the retry policy of :mod:`centaur_hpo.storage`, on SQLite and PostgreSQL.

The lock is tested the way it is used: separate processes doing a read-modify-write of a shared
counter under it. Without mutual exclusion updates get lost and the count comes out short.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy import exc
from tests.pg_server import PgServer, pg_server_or_skip

from centaur_hpo.storage import is_transient_db_error, open_storage, retry_db, study_lock


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    yield server
    server.close()


def _bump(url: str, counter: str, times: int) -> None:
    storage = open_storage(url)
    study = optuna.load_study(study_name="lock", storage=storage)
    for _ in range(times):
        with study_lock(storage, study._study_id), study_lock(storage, study._study_id):
            value = int(Path(counter).read_text())  # re-entrant: the inner lock is free
            time.sleep(0.01)
            Path(counter).write_text(str(value + 1))


def _count_under_lock(url: str, tmp_path: Path, procs: int = 3, times: int = 8) -> int:
    optuna.create_study(study_name="lock", storage=open_storage(url))
    counter = tmp_path / "counter"
    counter.write_text("0")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_bump, args=(url, str(counter), times)) for _ in range(procs)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    return int(counter.read_text())


def test_study_lock_excludes_other_processes_sqlite(tmp_path: Path) -> None:
    assert _count_under_lock(f"sqlite:///{tmp_path / 's.db'}", tmp_path) == 24


@pytest.mark.postgres
def test_study_lock_excludes_other_processes_postgres(pg: PgServer, tmp_path: Path) -> None:
    assert _count_under_lock(pg.new_database(), tmp_path) == 24


@pytest.mark.postgres
def test_retry_rides_out_a_server_restart(pg: PgServer) -> None:
    url = pg.new_database()
    storage = open_storage(url)
    study = optuna.create_study(study_name="r", storage=storage)
    pg.stop("immediate")
    with pytest.raises(Exception) as info:
        study.get_trials(deepcopy=False)
    assert is_transient_db_error(info.value)
    said: list[str] = []
    started = time.monotonic()

    def call() -> int:
        if time.monotonic() - started > 1.0 and not (pg.data / "postmaster.pid").exists():
            pg.start()  # the server comes back while the caller is backing off
        return len(optuna.load_study(study_name="r", storage=storage).trials)

    assert retry_db(call, patience=60, say=said.append, what="a test read") == 0
    assert said and "storage unavailable during a test read" in said[0]


def test_transient_errors_are_told_apart() -> None:
    assert is_transient_db_error(exc.OperationalError("SELECT 1", {}, Exception("conn lost")))
    wrapped = optuna.exceptions.StorageInternalError("commit failed")
    wrapped.__cause__ = exc.OperationalError("COMMIT", {}, Exception("server closed"))
    assert is_transient_db_error(wrapped)
    assert not is_transient_db_error(exc.IntegrityError("INSERT", {}, Exception("duplicate")))
    assert not is_transient_db_error(ValueError("bad input"))
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("x")

    with pytest.raises(ValueError):
        retry_db(bad, patience=5)
    assert calls == [1]  # not retried: a retry cannot cure bad input
