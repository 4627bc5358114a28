"""``centaur surrogate fit`` / ``show``: CV accuracy printed at fit time, bad logs rejected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sklearn")

from tests.tasks import sim_logs  # noqa: E402

from centaur_hpo.cli import main  # noqa: E402


def test_fit_prints_cv_accuracy_and_writes_model_and_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = sim_logs.write_paper_json(tmp_path / "paper.json", n_per_seed=20)
    out = tmp_path / "paper.joblib"
    rc = main(
        [
            "surrogate",
            "fit",
            str(log),
            "--space",
            "autoresearch",
            "-o",
            str(out),
            "--trees",
            "20",
            "--folds",
            "3",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    assert "metric (" in text and "R2" in text and "MAE" in text
    assert "AUC" in text and "Brier" in text and "time of ok trials" in text
    assert "repeated configurations" in text  # the default opens every seed's study
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["n_trials"] == 120 and meta["cv"]["metric"]["folds"] == 3
    assert (
        meta["command"].startswith("centaur surrogate fit ")
        and "--space autoresearch" in meta["command"]
    )
    assert main(["surrogate", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "WINDOW_PATTERN" in shown and "scikit-learn" in shown


def test_malformed_log_exits_2_with_the_fix_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = sim_logs.records(20)
    for r in rows:
        r["val"] = r.pop("value")
    log = sim_logs.write_csv(tmp_path / "bad.csv", rows)
    out = tmp_path / "m.joblib"
    assert main(["surrogate", "fit", str(log), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no value column" in err and "--value COLUMN" in err
    assert not out.exists()
    # naming the column fixes it
    assert (
        main(
            [
                "surrogate",
                "fit",
                str(log),
                "-o",
                str(out),
                "--value",
                "val",
                "--trees",
                "10",
                "--folds",
                "2",
            ]
        )
        == 0
    )
    assert out.exists()
