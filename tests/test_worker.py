"""Many `centaur worker` processes on one study in a real PostgreSQL server on 127.0.0.1.

Every test starts real worker subprocesses (the installed CLI) on a fast simulated task
(``tests/worker_tasks.py``), reads the study back from the server, and checks it against the
objective's own ledger of evaluations: every trial number unique, every result present once and
equal to what the objective returned, the best value the same everywhere it is shown.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tests.pg_server import PgServer, pg_server_or_skip
from tests.worker_tasks import quad, quad_value

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import RERUN_KEY, STATE_KEY, load_state
from centaur_hpo.records import best_trial
from centaur_hpo.storage import open_storage
from centaur_hpo.study import HEARTBEAT_KEY, STOP_KEY, WORKER_KEY, StudyRunner
from centaur_hpo.worker import StudySpec, parse_slots

TASK = f"fn:{Path(__file__).with_name('worker_tasks.py')}:quad"
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    yield server
    server.close()


def centaur(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """Start the real CLI (``python -m centaur_hpo.cli``); its output goes to ``log`` (a file,
    so a long-running worker can never block on a full pipe)."""
    out = open(log, "w") if log else subprocess.PIPE  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "centaur_hpo.cli", *args],
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        text=True,
    )
    proc.log = log  # type: ignore[attr-defined]
    if log:
        out.close()  # type: ignore[union-attr]
    return proc


def run_cli(*args: str, timeout: float = 60) -> str:
    proc = centaur(*args)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"centaur {args[0]} failed:\n{out}\n{err}"
    return out


def worker_args(url: str, study: str, *extra: str, tmp: Path) -> list[str]:
    return [
        "worker",
        "--task",
        TASK,
        "--storage",
        url,
        "--study",
        study,
        "--run-dir",
        str(tmp / "runs"),
        "--heartbeat",
        "0.5",
        "--grace",
        "5",
        *extra,
    ]


def start_workers(
    k: int, args: list[str], env: dict[str, str], tmp: Path
) -> list[subprocess.Popen]:
    return [
        centaur(*args, env=env, log=tmp / f"worker-{time.monotonic_ns()}-{i}.log") for i in range(k)
    ]


def finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every worker; each must exit 0. Returns what each printed."""
    deadline = time.monotonic() + timeout
    texts = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"worker {p.pid} did not finish in {timeout} s") from None
        text = p.log.read_text() if p.log else (out or "") + (err or "")  # type: ignore[attr-defined]
        assert p.returncode == 0, f"worker {p.pid} exited {p.returncode}:\n{text[-3000:]}"
        texts.append(text)
    return texts


def read_ledger(path: Path) -> tuple[collections.Counter, collections.Counter, dict[int, float]]:
    starts: collections.Counter = collections.Counter()
    ends: collections.Counter = collections.Counter()
    values: dict[int, float] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "start":
            starts[int(parts[1])] += 1
        elif parts[0] == "end":
            ends[int(parts[1])] += 1
            values[int(parts[1])] = float(parts[3])
    return starts, ends, values


def check_study(url: str, name: str, ledger: Path, n_trials: int) -> optuna.Study:
    """The invariants every multi-worker study must keep (see the module doc)."""
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and sorted(numbers) == list(range(len(numbers)))
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == n_trials, f"{len(done)} completed, budget {n_trials}"
    starts, ends, values = read_ledger(ledger)
    assert max(starts.values()) == 1, "a trial number was evaluated twice"
    for t in done:
        assert ends[t.number] == 1
        assert t.user_attrs["outcome"] == "ok"
        assert t.values[0] == t.user_attrs["value"] == values[t.number]
        assert math.isclose(values[t.number], quad_value(t.params), rel_tol=1e-12)
    best = best_trial(study)
    assert best is not None and best.user_attrs["value"] == min(values[t.number] for t in done)
    return study


def test_four_workers_share_one_study(pg: PgServer, tmp_path: Path) -> None:
    """4 workers, 200 trials: nothing run twice, nothing lost; ops commands work meanwhile."""
    url, n = pg.new_database(), 200
    ledger = tmp_path / "ledger.txt"
    env = {"CENTAUR_TEST_LEDGER": str(ledger), "CENTAUR_TEST_SLEEP": "0.01"}
    args = worker_args(url, "many", "--method", "random", "--trials", str(n), tmp=tmp_path)
    procs = start_workers(4, args, env, tmp_path)  # all at once: they race to create it
    # Operations against the shared storage while the workers run.
    while not ledger.exists() or len(ledger.read_text().splitlines()) < 20:
        time.sleep(0.2)
        assert all(p.poll() in (None, 0) for p in procs)
    status = run_cli("status", "--storage", url, "--study", "many")
    assert "study    many" in status and "trials" in status
    assert "many" in run_cli("studies", "--storage", url)
    mid = tmp_path / "mid.csv"
    run_cli("export", "--storage", url, "--study", "many", "-o", str(mid))
    assert len(list(csv.DictReader(mid.open()))) >= 1
    finish(procs, timeout=90)

    study = check_study(url, "many", ledger, n)
    owners = {t.system_attrs[WORKER_KEY]["pid"] for t in study.get_trials(deepcopy=False)}
    assert owners == {p.pid for p in procs}, "every worker ran trials"
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs), "two workers drew the same random configuration"
    best = best_trial(study)
    assert f"best     {best.user_attrs['value']} (trial #{best.number})" in run_cli(
        "status", "--storage", url, "--study", "many"
    )
    out = tmp_path / "trials.csv"
    run_cli("export", "--storage", url, "--study", "many", "-o", str(out))
    table = list(csv.DictReader(out.open()))
    assert sorted(int(r["number"]) for r in table) == list(range(n))
    assert min(float(r["value"]) for r in table) == best.user_attrs["value"]


def test_cmaes_generations_shared_by_parallel_workers(pg: PgServer, tmp_path: Path) -> None:
    """CMA-ES with 4 workers: one optimizer state in the storage, every proposal told once."""
    url, n, pop = pg.new_database(), 41, 8
    ledger = tmp_path / "ledger.txt"
    env = {"CENTAUR_TEST_LEDGER": str(ledger), "CENTAUR_TEST_SLEEP": "0.03"}
    first = worker_args(
        url,
        "cma",
        "--method",
        "cmaes",
        "--option",
        f"popsize={pop}",
        "--trials",
        str(n),
        tmp=tmp_path,
    )
    procs = start_workers(1, first, env, tmp_path)
    while not ledger.exists():  # the first worker has created the study
        assert procs[0].poll() is None
        time.sleep(0.1)
    # Later workers join with only --storage/--study: the flags come from the study.
    join = ["worker", "--storage", url, "--study", "cma", "--run-dir", str(tmp_path / "runs")]
    procs += start_workers(3, join, env, tmp_path)
    finish(procs, timeout=90)

    study = check_study(url, "cma", ledger, n)
    # The last trials finished after the last proposal; a fresh sampler (as a resumed study
    # would) loads the shared state and observes them.
    space = quad(0)[0]
    sampler = make_sampler("cmaes", space, 0, popsize=pop)
    sampler.sync(study)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    state = load_state(attrs[f"{STATE_KEY}:cmaes"])
    observed = state["observed"]
    assert sorted(observed) == list(range(n)), "each finished trial observed exactly once"
    # Every proposal found its own pending solution: only trial 0 (the default) was injected.
    assert state["injected"] == 1 and state["pending"] == {}
    opt = state["optimizer"]
    assert opt.generation == n // pop and len(state["buffer"]) == n % pop
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs), "two workers were handed the same CMA-ES sample"
    assert {t.system_attrs[WORKER_KEY]["pid"] for t in study.trials} == {p.pid for p in procs}
    default = quad_value({"x": 0.0, "y": 0.0, "z": 0.0, "n": 1, "kind": "c"})
    assert best_trial(study).user_attrs["value"] < default / 2  # CMA-ES made progress


def test_tpe_constant_liar_with_parallel_workers(pg: PgServer, tmp_path: Path) -> None:
    """TPE with 4 workers: distinct random streams, no duplicate proposals, the liar sees pending."""
    url, n = pg.new_database(), 24
    ledger = tmp_path / "ledger.txt"
    env = {"CENTAUR_TEST_LEDGER": str(ledger), "CENTAUR_TEST_SLEEP": "0.05"}
    args = worker_args(url, "tpe", "--method", "tpe", "--trials", str(n), tmp=tmp_path)
    finish(start_workers(4, args, env, tmp_path), timeout=90)
    study = check_study(url, "tpe", ledger, n)
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs)
    # Trials overlapped in time: proposals were made while others ran (what the liar is for).
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_stop_lets_running_trials_finish_and_starts_no_new_ones(
    pg: PgServer, tmp_path: Path
) -> None:
    url = pg.new_database()
    ledger = tmp_path / "ledger.txt"
    env = {"CENTAUR_TEST_LEDGER": str(ledger), "CENTAUR_TEST_SLEEP": "0.4"}
    args = worker_args(url, "stopme", "--method", "random", "--trials", "1000", tmp=tmp_path)
    procs = start_workers(3, args, env, tmp_path)
    while not ledger.exists() or read_ledger(ledger)[1].total() < 6:
        time.sleep(0.1)
    assert "stop requested" in run_cli("stop", "--storage", url, "--study", "stopme")
    asked_stop = time.monotonic()
    errs = finish(procs, timeout=30)
    assert time.monotonic() - asked_stop < 10
    assert all("stop was requested" in e for e in errs)
    study = optuna.load_study(study_name="stopme", storage=open_storage(url))
    trials = study.get_trials(deepcopy=False)
    starts, ends, _ = read_ledger(ledger)
    assert starts == ends, "a running trial was cut off instead of finishing"
    assert all(t.state == TrialState.COMPLETE for t in trials) and len(trials) < 60
    assert study._storage.get_study_system_attrs(study._study_id)[STOP_KEY] is True
    assert "stop     requested" in run_cli("status", "--storage", url, "--study", "stopme")
    # A worker that joins a stopped study starts nothing.
    finish(start_workers(1, ["worker", "--storage", url, "--study", "stopme"], env, tmp_path), 30)
    assert len(study.get_trials(deepcopy=False)) == len(trials)
    assert "stop withdrawn" in run_cli("stop", "--storage", url, "--study", "stopme", "--undo")
    assert study._storage.get_study_system_attrs(study._study_id)[STOP_KEY] is False


def test_joining_worker_errors_say_what_to_fix(pg: PgServer, tmp_path: Path) -> None:
    url = pg.new_database()
    proc = centaur("worker", "--storage", url, "--study", "nothing-yet")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "the first worker creates it" in err
    args = worker_args(url, "w", "--method", "random", "--trials", "3", tmp=tmp_path)
    finish(start_workers(1, args, {}, tmp_path), timeout=60)
    other = worker_args(url, "w", "--method", "tpe", "--trials", "3", tmp=tmp_path)
    proc = centaur(*other)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--method 'tpe' (the study has 'random')" in err


def test_only_one_worker_requeues_a_dead_trial(pg: PgServer) -> None:
    """Four workers recover at once: each dead trial is failed and re-queued exactly once."""
    url = pg.new_database()
    space, fn, _ = quad(0)
    study = optuna.create_study(study_name="dead", storage=open_storage(url))
    gone = subprocess.Popen(["true"])
    gone.wait()
    owners = [
        ({"host": socket.gethostname(), "pid": gone.pid, "pstart": None}, time.time()),  # dead here
        ({"host": "elsewhere", "pid": 1, "pstart": None}, time.time() - 3600),  # silent elsewhere
        ({"host": "elsewhere", "pid": 2, "pstart": None}, time.time()),  # alive elsewhere
    ]
    for owner, beat in owners:
        t = study.ask(space.distributions())
        study._storage.set_trial_system_attr(t._trial_id, WORKER_KEY, owner)
        study._storage.set_trial_system_attr(t._trial_id, HEARTBEAT_KEY, beat)
    study.ask()  # an orphan: its proposer died before writing parameters or an owner
    results: list[list[int]] = []

    def recover() -> None:
        runner = StudyRunner(
            optuna.load_study(study_name="dead", storage=open_storage(url)),
            FunctionEvaluator(space, fn),
            grace_period=60,
        )
        results.append(runner.recover())

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(n for r in results for n in r) == [0, 1]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials[:4]] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.FAIL,
    ]
    assert trials[3].user_attrs["outcome"] == "interrupted"  # the orphan: failed, nothing to re-run
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert [(w.user_attrs[RERUN_KEY], w.system_attrs["fixed_params"]) for w in waiting] == [
        (0, trials[0].params),
        (1, trials[1].params),
    ]


def test_parse_slots() -> None:
    assert parse_slots("0,1", per_gpu=2) == ["0", "0", "1", "1"]
    assert parse_slots(None) is None
    with pytest.raises(ValueError, match="at least 1"):
        parse_slots("0", per_gpu=0)
    with pytest.raises(ValueError, match="--trials"):
        StudySpec(target=TASK).check()
