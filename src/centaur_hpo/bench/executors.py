"""Where a grid's cells run: in this process, on a local process pool, or on a Dask cluster.

Every executor runs the same function (:func:`~centaur_hpo.bench.grid.run_cell_safe`) on the
same picklable jobs, and every cell writes into the one storage, so the results do not depend on
the executor (a test checks that a Dask ``LocalCluster`` and the local pool agree).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed

from centaur_hpo.bench.grid import CellJob, CellResult, run_cell_safe
from centaur_hpo.bench.store import open_bench_storage


def prepare_storages(jobs: Sequence[CellJob]) -> None:
    """Create each storage's schema once, here, before workers open it concurrently.

    Two processes creating Optuna's tables in one fresh SQLite file at the same moment can
    fail (both insert the schema version); opening it once first removes the race.
    """
    for url in dict.fromkeys(j.storage for j in jobs):
        engine = getattr(open_bench_storage(url), "engine", None)
        if engine is not None:
            engine.dispose()


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads() -> None:
    """One math thread per worker process.

    Each cell is single-threaded work; with several workers, BLAS and torch (GP's sampler) would
    each start a thread per core and the workers would fight over them, which made a GP cell
    several times slower on two cores. Runs before the worker imports numpy or torch.
    """
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def run_inline(jobs: Sequence[CellJob]) -> Iterator[CellResult]:
    """One cell after another in this process (``--jobs 1``: simplest to debug)."""
    for job in jobs:
        yield run_cell_safe(job)


def run_local_pool(jobs: Sequence[CellJob], n_workers: int) -> Iterator[CellResult]:
    """Cells on ``n_workers`` local processes, yielded as they finish.

    ``spawn`` rather than ``fork``: the parent may hold SQLite connections and threads (a fork
    would copy them half-alive), and spawn behaves the same on every platform.
    """
    prepare_storages(jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=n_workers, mp_context=ctx, initializer=limit_threads
    ) as pool:
        futures = [pool.submit(run_cell_safe, job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()


def run_dask(jobs: Sequence[CellJob], address: str) -> Iterator[CellResult]:
    """Cells on the Dask cluster whose scheduler listens at ``address`` (``tcp://host:8786``).

    The workers must be able to import centaur_hpo, reach the storage (use PostgreSQL, or a
    SQLite file on a shared file system) and, for ``fn:`` tasks, read the task's file.
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise ValueError(
            "--dask-scheduler needs Dask: pip install 'centaur-hpo[bench]' (dask[distributed])"
        ) from None
    prepare_storages(jobs)
    client = Client(address)
    try:
        # pure=False: two identical jobs are still two runs (Dask would otherwise merge them).
        client.run(limit_threads)
        futures = client.map(run_cell_safe, list(jobs), pure=False)
        for fut in dask_completed(futures):
            yield fut.result()
    finally:
        client.close()


def executor_for(
    jobs_n: int, dask_scheduler: str | None
) -> Callable[[Sequence[CellJob]], Iterator[CellResult]]:
    """The executor the command line asked for."""
    if dask_scheduler:
        return lambda jobs: run_dask(jobs, dask_scheduler)
    if jobs_n <= 1:
        return run_inline
    return lambda jobs: run_local_pool(jobs, jobs_n)
