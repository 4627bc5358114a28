"""The command line end to end on the autoresearch stand-in, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from centaur_hpo.cli import main


def centaur(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "centaur_hpo.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tune_autoresearch_contract(autoresearch_dir: Path) -> None:
    """autoresearch's train.py/prepare.py layout runs unchanged; the trial budget reaches it."""
    before = {p.name: p.read_text() for p in autoresearch_dir.iterdir()}
    out = centaur(
        "tune",
        "train.py",
        "--space",
        "autoresearch",
        "--method",
        "random",
        "--trials",
        "4",
        "--trial-budget",
        "1",
        cwd=autoresearch_dir,
    )
    assert out.returncode == 0, out.stderr
    assert "best configuration" in out.stdout and "val_bpb" in out.stderr
    after = {p.name: p.read_text() for p in autoresearch_dir.iterdir() if p.is_file()}
    assert after == before  # the user's files are never modified
    run = autoresearch_dir / "runs" / "autoresearch-train-random-s0"
    trial0 = run / "trials" / "00000"
    assert "TIME_BUDGET = 1\n" in (trial0 / "prepare.py").read_text()  # budget reached prepare.py
    assert not (trial0 / "prepare.py").is_symlink()
    assert (run / "trials.csv").read_text().count("\n") == 5
    status = centaur("status", cwd=autoresearch_dir)
    assert status.returncode == 0 and "trials   4" in status.stdout
    best = centaur("best", "--study", "autoresearch-train-random-s0", cwd=autoresearch_dir)
    params = json.loads(best.stdout)["params"]
    assert params["TOTAL_BATCH_SIZE"] % (params["DEVICE_BATCH_SIZE"] * 2048) == 0
    export = centaur("export", "-o", "t.csv", cwd=autoresearch_dir)
    assert export.returncode == 0 and (autoresearch_dir / "t.csv").exists()


def test_space_command_prints_rules(
    autoresearch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["space", str(autoresearch_dir / "train.py")]) == 0
    out = capsys.readouterr().out
    assert "inferred" in out and "Where no space file gives" in out


def test_script_without_knobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.py").write_text("print('hi')\n")
    assert main(["tune", str(tmp_path / "t.py"), "--trials", "2", "--run-dir", str(tmp_path)]) == 2
    assert "no module-level ALL_CAPS" in capsys.readouterr().err


def test_space_file_with_unknown_knob(
    autoresearch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = autoresearch_dir / "bad.toml"
    f.write_text('[params.LEARNING_RATE]\ntype = "float"\nlow = 0.1\nhigh = 1.0\n')
    code = main(
        [
            "tune",
            str(autoresearch_dir / "train.py"),
            "--space",
            str(f),
            "--trials",
            "1",
            "--run-dir",
            str(autoresearch_dir / "runs"),
        ]
    )
    assert code == 2 and "does not define: ['LEARNING_RATE']" in capsys.readouterr().err


def test_bounds_excluding_default(
    autoresearch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = autoresearch_dir / "bad.toml"
    f.write_text('[params.MATRIX_LR]\ntype = "float"\nlow = 0.1\nhigh = 1.0\n')
    code = main(
        [
            "tune",
            str(autoresearch_dir / "train.py"),
            "--space",
            str(f),
            "--trials",
            "1",
            "--run-dir",
            str(autoresearch_dir / "runs"),
        ]
    )
    assert code == 2 and "default 0.04 lies outside" in capsys.readouterr().err


def test_script_that_never_prints_the_metric(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("LR = 0.1\nprint('done training')\n")
    out = centaur("tune", "train.py", "--trials", "10", cwd=tmp_path)
    assert out.returncode == 1
    assert "printed no 'val_bpb'" in out.stdout + out.stderr
    # The trials that ran are recorded, not lost.
    status = centaur("status", cwd=tmp_path)
    assert "no_metric': 3" in status.stdout


def test_unknown_method_and_bad_budget(
    autoresearch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "x.py", "--method", "nope"])
    code = main(
        [
            "tune",
            str(autoresearch_dir / "train.py"),
            "--budget",
            "soon",
            "--run-dir",
            str(autoresearch_dir / "runs"),
        ]
    )
    assert code == 2 and "cannot read duration" in capsys.readouterr().err


def test_resume_with_other_method_is_refused(autoresearch_dir: Path) -> None:
    args = [
        "tune",
        "train.py",
        "--space",
        "autoresearch",
        "--trials",
        "1",
        "--study",
        "s",
        "--trial-budget",
        "1",
    ]
    assert centaur(*args, "--method", "random", cwd=autoresearch_dir).returncode == 0
    out = centaur(*args, "--method", "tpe", cwd=autoresearch_dir)
    assert out.returncode != 0 and "was run with --method random" in out.stderr


SLEEPER = """\
import os, time
LR = 0.1
open(os.path.join(os.environ.get("PID_DIR", "."), f"pid-{os.getpid()}"), "w").close()
time.sleep(60)
print('{"loss": 1.0}')
"""


def test_sigterm_kills_the_running_trial_and_records_it(tmp_path: Path) -> None:
    """A scheduler's SIGTERM to `centaur tune` must not leave the training process behind."""
    import os
    import signal
    import time

    import optuna

    (tmp_path / "train.py").write_text(SLEEPER)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    cmd = [sys.executable, "-m", "centaur_hpo.cli", "tune", "train.py", "--metric", "loss"]
    cmd += ["--trials", "2", "--method", "random", "--study", "s"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env={**os.environ, "PID_DIR": str(pid_dir)}, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not list(pid_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p.name.split("-")[1]) for p in pid_dir.iterdir()]
    assert pids, "the trial never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'runs/s/study.db'}")
    assert study.trials[0].state.name == "FAIL"
    assert study.trials[0].user_attrs["outcome"] == "interrupted"


def test_tune_a_simulated_task(tmp_path: Path) -> None:
    """`--task` also takes the simulated tasks: a study on the simulated clock, in seconds."""
    import optuna

    out = centaur("tasks", cwd=tmp_path)
    assert "autoresearch-sim" in out.stdout.split() and "bbob:f1:d5:i1" in out.stdout.split()
    out = centaur(
        "tune", "--task", "autoresearch-sim", "--method", "cmaes", "--trials", "12", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(
        study_name="autoresearch-sim-cmaes-s0",
        storage=f"sqlite:///{tmp_path / 'runs/autoresearch-sim-cmaes-s0/study.db'}",
    )
    assert len(study.trials) == 12
    # Trial 0 is the default configuration; the synthetic landscape puts it near 0.992.
    assert study.trials[0].user_attrs["value"] == pytest.approx(0.992, abs=0.003)
    bad = centaur("tune", "--task", "no-such-task", "--trials", "3", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown simulated task" in bad.stderr
