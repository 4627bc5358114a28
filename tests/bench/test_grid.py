"""Grids: cells, settings, resume after a kill, and the acceptance grid on two cores."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tests.bench.objectives import spec

from centaur_hpo.bench.grid import (
    DONE_KEY,
    GridSpec,
    TaskRef,
    cell_name,
    load_config,
    parse_seeds,
    run_cell,
    spec_from_config,
)
from centaur_hpo.bench.store import open_bench_storage

CENTAUR = [sys.executable, "-m", "centaur_hpo.cli"]


def cell_results(url: str) -> dict[str, list[tuple]]:
    """Per study: (number, outcome, value, params) of every trial, the comparable content."""
    storage = open_bench_storage(url)
    out = {}
    for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
        sid = storage.get_study_id_from_name(s.study_name)
        out[s.study_name] = [
            (
                t.number,
                t.user_attrs.get("outcome"),
                t.user_attrs.get("value"),
                tuple(sorted(t.params.items())),
            )
            for t in storage.get_all_trials(sid)
        ]
    return out


def done_cells(db: Path) -> set[str]:
    """Finished cells, read with plain sqlite3 (a reader never waits for the grid's writers)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        rows = con.execute(
            "SELECT s.study_name FROM studies s JOIN study_system_attributes a "
            "ON a.study_id = s.study_id WHERE a.key = ?",
            (DONE_KEY,),
        ).fetchall()
    return {r[0] for r in rows}


def test_parse_seeds() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0-2,7,2") == [0, 1, 2, 7]
    assert parse_seeds(3) == [0, 1, 2]
    for bad in ("4-1", "a", ""):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_grid_spec_validation_and_config(tmp_path: Path) -> None:
    g = GridSpec(["tpe", "nope"], [0], [TaskRef("t", "x")], n_trials=3)
    with pytest.raises(ValueError, match="unknown method"):
        g.validate()
    with pytest.raises(ValueError, match="budget"):
        GridSpec(["tpe"], [0], [TaskRef("t", "x")]).validate()
    cfg = tmp_path / "grid.toml"
    cfg.write_text(
        'methods = ["random", "tpe"]\nseeds = "0-2"\nbudget = "2h"\n'
        f'[tasks]\nsphere = "{spec("sphere")}"\n'
        '[limits.tpe]\nseeds = "0-1"\n'
    )
    g = spec_from_config(load_config(cfg))
    g.validate()
    jobs = g.jobs("sqlite:///x.db", tmp_path)
    assert sorted(j.name for j in jobs) == sorted(
        [cell_name("sphere", "random", s) for s in range(3)]
        + [cell_name("sphere", "tpe", s) for s in range(2)]
    )
    assert all(j.budget_seconds == 7200 for j in jobs)
    cfg.write_text('methods = ["random"]\nseed = 3\n')
    with pytest.raises(ValueError, match="unknown key"):
        load_config(cfg)


def test_changed_settings_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    g = GridSpec(["random"], [0], [TaskRef("sphere", spec("sphere"))], n_trials=4)
    job = g.jobs(url, tmp_path)[0]
    assert run_cell(job).status == "ran"
    assert run_cell(job).status == "skipped"
    g.n_trials = 5
    with pytest.raises(ValueError, match="other settings"):
        run_cell(g.jobs(url, tmp_path)[0])


def _bench_cmd(url: str, out: Path, jobs: int = 2) -> list[str]:
    return CENTAUR + [
        "bench",
        "--methods",
        "random,tpe,cmaes",
        "--seeds",
        "0-2",
        "--tasks",
        f"sphere={spec('sphere')},rosen={spec('rosen')}",
        "--budget",
        "4h",
        "--failure-value",
        "100",
        "--storage",
        url,
        "--out",
        str(out),
        "--jobs",
        str(jobs),
    ]


def test_killed_grid_resumes_only_missing_cells_and_matches(tmp_path: Path) -> None:
    """Kill the grid (SIGKILL, whole process group) midway; the re-run runs only what is
    missing, and the final studies equal those of an uninterrupted grid."""
    ref_url = f"sqlite:///{tmp_path / 'ref.db'}"
    db = tmp_path / "b.db"
    subprocess.run(
        _bench_cmd(ref_url, tmp_path / "ref", jobs=1),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    url = f"sqlite:///{tmp_path / 'b.db'}"
    proc = subprocess.Popen(
        _bench_cmd(url, tmp_path / "b"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    done: set[str] = set()
    error = None
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (tmp_path / "b.db").exists():
            try:
                done = done_cells(db)
            except Exception as e:  # noqa: BLE001 - the database may still be being created
                error = e
                continue
        if len(done) >= 3:
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    output = proc.communicate()[0]
    assert 3 <= len(done) < 18, f"killed with {len(done)} cells done: {error!r} {output}"
    done_before = done_cells(db)
    before = cell_results(url)
    rerun = subprocess.run(
        _bench_cmd(url, tmp_path / "b"), capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"({len(done_before)} done, {18 - len(done_before)} to run)" in rerun.stdout
    ran = [ln for ln in rerun.stdout.splitlines() if "] ran" in ln]
    assert len(ran) == 18 - len(done_before)
    assert not any(name in ln for ln in ran for name in done_before)
    after = cell_results(url)
    for name in done_before:  # finished cells were not touched
        assert after[name] == before[name]
    assert after == cell_results(ref_url)
    assert len(after) == 18


def test_acceptance_grid_five_methods_five_seeds(tmp_path: Path) -> None:
    """>= 5 methods x 5 seeds on the autoresearch-like simulated task and a BBOB function in
    minutes on two cores (11 trials per cell: GP and TPE model from trial 10 on)."""
    tasks = ["ar=autoresearch-sim", "bbob:f1:d5:i1"]
    url = f"sqlite:///{tmp_path / 'acc.db'}"
    t0 = time.monotonic()
    res = subprocess.run(
        CENTAUR
        + [
            "bench",
            "--methods",
            "random,tpe,cmaes,gp,smac",
            "--seeds",
            "0-4",
            "--tasks",
            ",".join(tasks),
            "--trials",
            "11",
            "--failure-value",
            "100",
            "--storage",
            url,
            "--out",
            str(tmp_path / "acc"),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = cell_results(url)
    assert len(results) == 25 * len(tasks)
    from centaur_hpo.tasks.autoresearch_sim import make_task

    default = make_task(0)[0].default_config()
    for name, trials in results.items():
        assert len(trials) == 11, name
        if name.startswith("bench:ar:"):  # trial 0 is the default configuration
            assert dict(trials[0][3]) == pytest.approx(default), name
    print(f"acceptance grid: {len(results)} cells in {wall:.1f}s")
    assert wall < 480  # minutes, even on two busy cores
