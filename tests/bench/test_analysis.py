"""Analysis: per-seed curves, bands that never pool seeds, incumbents, diversity, ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from tests.bench.objectives import spec

from centaur_hpo.bench import analysis
from centaur_hpo.bench.grid import GridSpec, TaskRef, run_cell
from centaur_hpo.bench.store import open_bench_storage

SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}


def row(
    n: int,
    value: float | None,
    outcome: str = "ok",
    t: float = 10.0,
    opt: float = 0.0,
    x: float = 0.5,
    c: str = "a",
) -> dict:
    return {
        "number": n,
        "outcome": outcome,
        "value": value,
        "time_training": t,
        "time_wall": t,
        "time_optimizer": opt,
        "param:x": x,
        "param:c": c,
    }


def cell(seed: int, trials: list[dict], method: str = "m", task: str = "t") -> analysis.Cell:
    return analysis.Cell(
        f"bench:{task}:{method}:s{seed}",
        task,
        method,
        seed,
        "minimize",
        100.0,
        0.5,
        None,
        None,
        True,
        None,
        trials,
        SPACE,
    )


def test_trace_best_so_far_on_each_clock() -> None:
    c = cell(0, [row(0, None, "diverged", t=5), row(1, 3.0), row(2, 4.0, opt=2.0), row(3, 1.0)])
    c.llm_by_trial = {2: 3.0}
    x, y = c.trace("training")
    assert x.tolist() == [5, 15, 25, 35]
    assert np.isnan(y[0]) and y[1:].tolist() == [3.0, 3.0, 1.0]
    x, _ = c.trace("total")
    assert x.tolist() == [5, 15, 30, 40]  # trial 2 adds 2 s optimizer + 3 s LLM
    x, _ = c.trace("trial")
    assert x.tolist() == [1, 2, 3, 4]
    assert [i["number"] for i in c.incumbents()] == [1, 3]
    assert c.best() == 1.0 and c.regret() == pytest.approx(0.5)


def test_band_reads_each_seed_separately() -> None:
    a = cell(0, [row(0, 4.0), row(1, 2.0)])
    b = cell(1, [row(0, 6.0), row(1, 6.0), row(2, 1.0)])
    band = analysis.band([a, b], "training", points=31)
    i = int(np.argmin(np.abs(band.x - 20.0)))  # both seeds have run two trials
    assert band.mean[i] == pytest.approx((2.0 + 6.0) / 2)
    assert band.hi[i] - band.mean[i] == pytest.approx(np.std([2.0, 6.0], ddof=1))
    j = len(band.x) - 1  # seed 0 ran out of budget at 20 s; its best stays 2.0
    assert band.mean[j] == pytest.approx((2.0 + 1.0) / 2)


def test_band_is_nan_until_every_seed_has_a_success() -> None:
    a = cell(0, [row(0, 4.0), row(1, 2.0)])
    b = cell(1, [row(0, None, "oom"), row(1, 6.0)])
    band = analysis.band([a, b], "training", points=21)
    assert np.isnan(band.mean[band.x < 20]).all()
    assert band.mean[-1] == pytest.approx(4.0)


def test_diversity_and_summary() -> None:
    same = cell(0, [row(0, 1.0), row(1, 1.0)])
    assert same.diversity() == 0.0
    spread = cell(1, [row(0, 1.0, x=0.0, c="a"), row(1, 2.0, x=1.0, c="b")])
    assert spread.diversity() == pytest.approx(math.sqrt(2) / math.sqrt(3))
    rows = analysis.summary_rows([same, spread, cell(2, [row(0, None, "oom"), row(1, 5.0)])])
    (r,) = rows
    assert r["best_mean"] == pytest.approx((1.0 + 1.0 + 5.0) / 3)
    assert r["failure_share"] == pytest.approx(1 / 6)
    assert r["outcomes"] == {"ok": 5, "oom": 1}


def test_ranks_single_task_use_seeds_as_blocks() -> None:
    cells = [
        cell(s, [row(0, v)], method=m)
        for m, vals in {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 0.5], "c": [3.0, 3.0, 3.0]}.items()
        for s, v in enumerate(vals)
    ]
    rk = analysis.average_ranks(cells)
    assert rk.block_kind == "seed" and len(rk.blocks) == 3
    assert rk.avg_ranks == pytest.approx({"a": 4 / 3, "b": 5 / 3, "c": 3.0})
    tests = analysis.paired_tests(cells)
    assert tests[0].warning and "at least 6 seeds" in tests[0].warning


def test_load_cells_reads_the_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    g = GridSpec(
        ["random"], [0, 1], [TaskRef("sphere", spec("sphere"))], n_trials=12, failure_value=100.0
    )
    for job in g.jobs(url, tmp_path):
        run_cell(job)
    storage = open_bench_storage(url)
    sid = storage.get_study_id_from_name("bench:sphere:random:s1")
    storage.set_study_system_attr(
        sid,
        "centaur:llm_call:000000",
        json.dumps({"trial": 3, "tokens_in": 100, "tokens_out": 20, "latency_s": 1.5}),
    )
    optuna.create_study(storage=storage, study_name="not-a-cell")
    cells = analysis.load_cells(url)
    assert [c.name for c in cells] == ["bench:sphere:random:s0", "bench:sphere:random:s1"]
    c0, c1 = cells
    assert len(c0.trials) == 12 and c0.optimum == 0.0 and c0.done
    study = optuna.load_study(study_name=c0.name, storage=storage)
    ok = [t.user_attrs["value"] for t in study.get_trials() if t.user_attrs["outcome"] == "ok"]
    assert c0.best() == min(ok)
    assert (c1.llm_calls, c1.llm_tokens_in + c1.llm_tokens_out, c1.llm_by_trial) == (
        1,
        120,
        {3: 1.5},
    )


def test_ranks_leave_out_methods_run_on_too_few_seeds() -> None:
    vals = {"a": [1.0, 1.0, 2.0, 1.0], "b": [2.0, 2.0, 1.0, 2.0], "c": [3.0, 3.0, 3.0, 3.0]}
    cells = [cell(s, [row(0, v)], method=m) for m, vs in vals.items() for s, v in enumerate(vs)]
    cells.append(cell(0, [row(0, 0.1)], method="expensive"))  # one seed only
    rk = analysis.average_ranks(cells)
    assert rk.methods == ["a", "b", "c"] and rk.left_out == ["expensive"]
    assert len(rk.blocks) == 4 and rk.avg_ranks["a"] == pytest.approx(1.25)
