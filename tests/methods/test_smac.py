"""SMAC3 behind the common interface: proposals, seeding and rebuild on resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


_HASH_SEED_SCRIPT = """
import json, optuna
from tests.test_study import SPACE, objective
from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.study import Budget, StudyRunner
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.create_study(sampler=make_sampler("smac", SPACE, 3))
StudyRunner(study, FunctionEvaluator(SPACE, objective), budget=Budget(n_trials=26)).run()
print(json.dumps([t.params for t in study.trials]))
"""


@pytest.mark.slow
def test_smac_same_seed_same_proposals_under_any_hash_seed() -> None:
    """SMAC's local search kept its start points in a set ordered by string hashing, so the same
    seed gave other proposals in another process; the sampler fixes that order."""
    root = Path(__file__).resolve().parents[2]
    runs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _HASH_SEED_SCRIPT],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert len(runs[0]) == 26
    assert runs[0] == runs[1]


def test_smac_forest_keeps_the_facade_model_but_predicts_inline() -> None:
    from ConfigSpace import ConfigurationSpace, Float
    from smac import Scenario

    from centaur_hpo.methods.smac import _forest

    cs = ConfigurationSpace(seed=0)
    cs.add(Float("x", (0.0, 1.0)))
    with tempfile.TemporaryDirectory() as tmp:
        model = _forest(Scenario(cs, output_directory=tmp, seed=0))
    options = model._rf_opts
    assert options["n_jobs"] == 1
    assert options["max_leaf_nodes"] is None
    assert options["n_estimators"] == 10 and options["bootstrap"] is True  # the facade's forest
