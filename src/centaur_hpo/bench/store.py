"""The benchmark storage: every cell's study in one Optuna storage, written at low cost.

Why this module exists: a simulated trial costs microseconds, but an Optuna ``RDBStorage`` commits
some twenty small transactions per trial (ask, a dozen user attributes, tell). On SQLite that caps
a cell at about 25 trials/s (about 50 with WAL), so SQLite, not the optimizer, would dominate a
grid. A simulated cell therefore runs against an in-memory copy of its study
(:class:`BufferedStudy`) and writes its finished trials back in one transaction every few trials.
The written studies are ordinary Optuna studies (optuna-dashboard, ``centaur status`` and the
analysis read them as they are). A killed worker loses at most the trials since its last flush;
they are simply run again when the grid is resumed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.api import open_storage


def open_bench_storage(url: str, *, wal: bool = True) -> BaseStorage:
    """``open_storage(url)`` plus, for SQLite, WAL journaling with ``synchronous=NORMAL``.

    WAL lets the report (or optuna-dashboard) read while workers write, and NORMAL drops the
    fsync per commit, which halves the cost of each transaction. Data written before a crash of
    the *machine* (not the process) may be lost; a grid re-runs those cells. WAL does not work on
    network file systems: pass ``wal=False`` there.
    """
    storage = open_storage(url)
    if wal and isinstance(storage, RDBStorage) and storage.engine.name == "sqlite":
        from sqlalchemy import event

        def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        event.listen(storage.engine, "connect", _pragmas)
        storage.engine.dispose()  # connections opened during set-up get the pragmas too
    return storage


def study_id_or_none(storage: BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


class BufferedStudy:
    """An in-memory working copy of one study in a backing storage, written back by :meth:`flush`.

    Only one process may work on a given study at a time (the grid guarantees it: one cell, one
    worker). Trials are written back in trial order and only once finished, so the backing study
    always holds a consistent prefix of the run.
    """

    def __init__(self, backing: BaseStorage, name: str, direction: str) -> None:
        self.backing = backing
        self.name = name
        self.memory = InMemoryStorage()
        directions = [
            StudyDirection.MINIMIZE if direction == "minimize" else StudyDirection.MAXIMIZE
        ]
        sid = study_id_or_none(backing, name)
        if sid is None:
            sid = backing.create_new_study(directions, name)
        self.backing_id = sid
        self.memory_id = self.memory.create_new_study(backing.get_study_directions(sid), name)
        self._system: dict[str, Any] = dict(backing.get_study_system_attrs(sid))
        self._user: dict[str, Any] = dict(backing.get_study_user_attrs(sid))
        for k, v in self._system.items():
            self.memory.set_study_system_attr(self.memory_id, k, v)
        for k, v in self._user.items():
            self.memory.set_study_user_attr(self.memory_id, k, v)
        persisted = backing.get_all_trials(sid, deepcopy=False)
        for t in persisted:
            self.memory.create_new_trial(self.memory_id, template_trial=t)
        self.n_written = len(persisted)

    @staticmethod
    def unfinished(backing: BaseStorage, name: str) -> bool:
        """True if the backing study has trials that are not finished (RUNNING or WAITING).

        Such a study was written by a direct (unbuffered) run; the study loop's own resume must
        handle it, so the grid runs it unbuffered.
        """
        sid = study_id_or_none(backing, name)
        if sid is None:
            return False
        return any(not t.state.is_finished() for t in backing.get_all_trials(sid, deepcopy=False))

    def flush(self) -> int:
        """Write finished trials not yet written, then changed study attributes; return how many.

        Stops at the first unfinished trial so the backing study never has a gap in its numbers.
        """
        trials = self.memory.get_all_trials(self.memory_id, deepcopy=False)
        new: list[FrozenTrial] = []
        for t in trials[self.n_written :]:
            if not t.state.is_finished():
                break
            new.append(t)
        if new:
            _write_trials(self.backing, self.backing_id, new)
            self.n_written += len(new)
        system = self.memory.get_study_system_attrs(self.memory_id)
        for k, v in system.items():
            if self._system.get(k, _MISSING) != v:
                self.backing.set_study_system_attr(self.backing_id, k, v)
        self._system = dict(system)
        user = self.memory.get_study_user_attrs(self.memory_id)
        for k, v in user.items():
            if self._user.get(k, _MISSING) != v:
                self.backing.set_study_user_attr(self.backing_id, k, v)
        self._user = dict(user)
        return len(new)


_MISSING = object()


def _write_trials(storage: BaseStorage, study_id: int, trials: Sequence[FrozenTrial]) -> None:
    """Write finished trials in one transaction where the storage is an RDB, else one by one.

    Optuna's own ``create_new_trial(template_trial=...)`` queries the database once per
    attribute (about 10 ms per trial on SQLite); adding the ORM rows in bulk takes a fraction of
    that. Anything unexpected in Optuna's models falls back to the public API.
    """
    if isinstance(storage, RDBStorage):
        try:
            _write_trials_rdb(storage, study_id, trials)
            return
        except (ImportError, AttributeError, TypeError):
            pass
    for t in trials:
        storage.create_new_trial(study_id, template_trial=t)


def _write_trials_rdb(storage: RDBStorage, study_id: int, trials: Sequence[FrozenTrial]) -> None:
    from optuna import distributions
    from optuna.storages._rdb import models
    from sqlalchemy import insert

    session = storage.scoped_session()
    try:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        rows = []
        for t in trials:
            row = models.TrialModel(study_id=study_id, number=t.number, state=t.state)
            row.datetime_start = t.datetime_start
            row.datetime_complete = t.datetime_complete
            rows.append(row)
        session.add_all(rows)
        session.flush()  # assigns trial ids
        values: list[dict[str, Any]] = []
        params: list[dict[str, Any]] = []
        user: list[dict[str, Any]] = []
        system: list[dict[str, Any]] = []
        inter: list[dict[str, Any]] = []
        for row, t in zip(rows, trials, strict=True):
            tid = row.trial_id
            for objective, v in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(v)
                values.append(
                    {"trial_id": tid, "objective": objective, "value": stored, "value_type": kind}
                )
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append(
                    {
                        "trial_id": tid,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(value),
                        "distribution_json": distributions.distribution_to_json(dist),
                    }
                )
            for key, value in t.user_attrs.items():
                user.append({"trial_id": tid, "key": key, "value_json": json.dumps(value)})
            for key, value in t.system_attrs.items():
                system.append({"trial_id": tid, "key": key, "value_json": json.dumps(value)})
            for step, value in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                    value
                )
                inter.append(
                    {
                        "trial_id": tid,
                        "step": step,
                        "intermediate_value": stored,
                        "intermediate_value_type": kind,
                    }
                )
        for model, batch in (
            (models.TrialValueModel, values),
            (models.TrialParamModel, params),
            (models.TrialUserAttributeModel, user),
            (models.TrialSystemAttributeModel, system),
            (models.TrialIntermediateValueModel, inter),
        ):
            if batch:  # one executemany per table (Core insert: no per-row ORM bookkeeping)
                session.execute(insert(model), batch)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def copy_finished(src: BaseStorage, src_name: str, dst: BaseStorage) -> None:
    """Copy a study (attributes and finished trials) into another storage under the same name."""
    sid = src.get_study_id_from_name(src_name)
    did = dst.create_new_study(src.get_study_directions(sid), src_name)
    for k, v in src.get_study_system_attrs(sid).items():
        dst.set_study_system_attr(did, k, v)
    for k, v in src.get_study_user_attrs(sid).items():
        dst.set_study_user_attr(did, k, v)
    _write_trials(
        dst,
        did,
        [
            t
            for t in src.get_all_trials(sid, deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.FAIL)
        ],
    )


def load_study(storage: BaseStorage, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)
