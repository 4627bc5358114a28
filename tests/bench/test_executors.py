"""The executors agree: a Dask LocalCluster with several worker processes, the local process
pool and the in-process runner give the same studies for the same seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.bench.objectives import spec
from tests.bench.test_grid import cell_results

from centaur_hpo.bench.executors import run_dask, run_inline, run_local_pool
from centaur_hpo.bench.grid import GridSpec, TaskRef


def _grid() -> GridSpec:
    return GridSpec(
        ["random", "cmaes"],
        [0, 1],
        [TaskRef("sphere", spec("sphere"))],
        budget_seconds=2 * 3600,
        failure_value=100.0,
    )


def test_local_pool_and_dask_cluster_agree(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    pool_url = f"sqlite:///{tmp_path / 'pool.db'}"
    res = list(run_local_pool(_grid().jobs(pool_url, tmp_path / "pool"), 2))
    assert sorted(r.status for r in res) == ["ran"] * 4, [r.message for r in res]
    dask_url = f"sqlite:///{tmp_path / 'dask.db'}"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        res = list(run_dask(_grid().jobs(dask_url, tmp_path / "dask"), cluster.scheduler_address))
        n_workers = len(cluster.workers)
    assert n_workers == 2
    assert sorted(r.status for r in res) == ["ran"] * 4, [r.message for r in res]
    pool, dask = cell_results(pool_url), cell_results(dask_url)
    assert len(pool) == 4 and pool == dask


def test_inline_runner_reports_errors_per_cell(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    g = GridSpec(
        ["random"],
        [0],
        [TaskRef("bad", "fn:no_such_module_xyz:f"), TaskRef("sphere", spec("sphere"))],
        n_trials=3,
    )
    res = {r.name: r for r in run_inline(g.jobs(url, tmp_path))}
    assert res["bench:bad:random:s0"].status == "error"
    assert "no_such_module_xyz" in res["bench:bad:random:s0"].message
    assert res["bench:sphere:random:s0"].status == "ran"
