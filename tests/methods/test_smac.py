"""SMAC3 behind the common interface: proposals, seeding and rebuild on resume."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

pytest.importorskip("smac")

from tests.test_study import SPACE, objective  # noqa: E402

from centaur_hpo.evaluate import FunctionEvaluator  # noqa: E402
from centaur_hpo.methods import make_sampler  # noqa: E402
from centaur_hpo.study import Budget, StudyRunner  # noqa: E402


def _run(path: Path, name: str, n: int) -> optuna.Study:
    study = optuna.create_study(
        storage=f"sqlite:///{path}",
        study_name=name,
        sampler=make_sampler("smac", SPACE, 1),
        load_if_exists=True,
    )
    StudyRunner(study, FunctionEvaluator(SPACE, objective), budget=Budget(n_trials=n)).run()
    return study


@pytest.mark.slow
def test_smac_runs_is_seeded_and_resumes(tmp_path: Path) -> None:
    a = _run(tmp_path / "a.db", "a", 14)
    b = _run(tmp_path / "b.db", "b", 14)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert all(t.user_attrs["outcome"] in ("ok", "oom") for t in a.trials)
    # A new process (new sampler object) continues the same study from the storage.
    c = _run(tmp_path / "a.db", "a", 18)
    assert len(c.trials) == 18
    assert all(SPACE.validate(t.params) == [] for t in c.trials)
