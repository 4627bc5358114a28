"""Faults a cluster produces, with real `centaur worker` processes and a real PostgreSQL server.

* 20 rounds of SIGKILL on a random worker at a random moment (each restarted at once), with the
  database server crashed and restarted once in the middle;
* an LLM-method study whose OpenAI-compatible endpoint (a local HTTP server) times out and
  answers with server errors, while a worker is killed too.

At the end: every completed trial is recorded once with the value the objective returned, no
trial number was evaluated twice, every interrupted trial was re-run with the same parameters,
and the trial budget was used exactly (no trial counted twice, none lost).
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tests.pg_server import PgServer, pg_server_or_skip
from tests.test_worker import check_study, finish, start_workers, worker_args
from tests.worker_tasks import quad

from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import RERUN_KEY, SOURCE_KEY
from centaur_hpo.storage import open_storage

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[PgServer]:
    server = pg_server_or_skip()  # its own server: this test restarts it
    yield server
    server.close()


def check_reruns(study: optuna.Study) -> int:
    """Every interrupted trial has a completed re-run with the same parameters; returns how many."""
    trials = study.get_trials(deepcopy=False)
    interrupted = [t for t in trials if t.user_attrs.get("outcome") == "interrupted"]
    for t in interrupted:
        root = t.user_attrs.get(RERUN_KEY, t.number)
        if len(t.params) < len(quad(0)[0]):
            continue  # killed before its parameters were written: it never ran, nothing to re-run
        reruns = [u for u in trials if u.user_attrs.get(RERUN_KEY) == root and u.number > t.number]
        assert reruns, f"interrupted trial {t.number} was not re-run"
        assert all(u.params == t.params for u in reruns)
        assert any(u.state == TrialState.COMPLETE for u in reruns)
    return len(interrupted)


def ended(ledger: Path) -> int:
    return ledger.read_text().count("end ") if ledger.exists() else 0


def kill_rounds(
    procs: list[subprocess.Popen],
    start: Callable[[], subprocess.Popen],
    ledger: Path,
    rounds: int,
    rng: random.Random,
    between: int = 1,
    on_round: Callable[[int], None] | None = None,
) -> None:
    """SIGKILL a random worker at a random moment, ``rounds`` times, restarting each at once.

    A round waits for ``between`` more finished evaluations (so the workers make progress
    between kills), then a random extra delay shorter than a trial; few evaluations pass per
    round on a fast machine or a slow one, so the study's budget outlasts the rounds.
    """
    for r in range(rounds):
        target = ended(ledger) + between
        while ended(ledger) < target:
            assert all(p.poll() is None for p in procs), "a worker exited during the rounds"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        if on_round:
            on_round(r)
        i = rng.randrange(len(procs))
        assert procs[i].poll() is None, "the study ended before the fault rounds did; raise n"
        procs[i].kill()
        procs[i].wait()
        procs[i] = start()


def test_sigkill_rounds_and_a_database_restart(pg: PgServer, tmp_path: Path) -> None:
    url, n, rounds = pg.new_database(), 100, 20
    ledger = tmp_path / "ledger.txt"
    env = {"CENTAUR_TEST_LEDGER": str(ledger), "CENTAUR_TEST_SLEEP": "0.3"}
    args = worker_args(url, "faults", "--method", "cmaes", "--trials", str(n), tmp=tmp_path)
    procs = start_workers(4, args, env, tmp_path)

    def restart_db(r: int) -> None:
        if r == rounds // 2:
            pg.restart("immediate", down_for=1.0)  # a crash: every connection dies

    kill_rounds(
        procs,
        lambda: start_workers(1, args, env, tmp_path)[0],
        ledger,
        rounds,
        random.Random(20240601),
        on_round=restart_db,
    )
    finish(procs, timeout=120)

    study = check_study(url, "faults", ledger, n)
    n_interrupted = check_reruns(study)
    assert n_interrupted >= 3, "too few kills landed inside a trial to test recovery"
    logs = [p.read_text() for p in tmp_path.glob("worker-*.log")]
    assert any("storage unavailable" in text for text in logs), "no worker saw the restart"
    # The CMA-ES state in the storage survived the kills: a fresh sampler continues from it.
    sampler = make_sampler("cmaes", quad(0)[0], 0)
    sampler.sync(study)
    assert sorted(sampler.state["observed"]) == sorted(
        t.number for t in study.trials if t.state == TrialState.COMPLETE
    )


class FlakyOpenAI(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that stalls past the client's timeout on some calls,
    answers 500/503 on others, and otherwise proposes a random valid configuration."""

    counts: dict[str, int] = {}
    rng = random.Random(7)
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            kind = self.rng.choices(["ok", "slow", "error"], weights=[5, 2, 2])[0]
            config = {
                "x": round(self.rng.uniform(-1, 1), 4),
                "y": round(self.rng.uniform(-1, 1), 4),
                "z": round(self.rng.uniform(-1, 1), 4),
                "n": self.rng.randint(1, 8),
                "kind": self.rng.choice("abc"),
            }
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "slow":
            time.sleep(1.5)  # the client gave up after timeout_s
        if kind == "error":
            self.send_response(self.rng.choice([500, 503]))
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "overloaded"}}')
            return
        answer = {
            "model": body.get("model", "flaky"),
            "choices": [
                {
                    "message": {"role": "assistant", "content": json.dumps(config)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30},
        }
        data = json.dumps(answer).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_llm_method_with_a_flaky_endpoint_and_a_killed_worker(pg: PgServer, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url, n = pg.new_database(), 16
        ledger = tmp_path / "ledger.txt"
        env = {
            "CENTAUR_TEST_LEDGER": str(ledger),
            "CENTAUR_TEST_SLEEP": "0.2",
            "OPENAI_API_KEY": "",
        }
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
        args = worker_args(
            url,
            "llm",
            "--method",
            "llm_agent",
            "--llm",
            f"openai:flaky@{endpoint}",
            "--option",
            "timeout_s=0.5",
            "--option",
            "retries=2",
            "--option",
            "backoff_s=0.01",
            "--option",
            "max_failed_calls=1000",
            "--option",
            "fallback=random",
            "--trials",
            str(n),
            tmp=tmp_path,
        )
        procs = start_workers(3, args, env, tmp_path)
        kill_rounds(
            procs, lambda: start_workers(1, args, env, tmp_path)[0], ledger, 2, random.Random(3)
        )
        finish(procs, timeout=60)
    finally:
        server.shutdown()

    study = check_study(url, "llm", ledger, n)
    check_reruns(study)
    counts = FlakyOpenAI.counts
    assert counts.get("slow", 0) >= 1 and counts.get("error", 0) >= 1 and counts.get("ok", 0) >= 1
    sources = [t.system_attrs.get(SOURCE_KEY) or "" for t in study.trials if t.number > 0]
    assert any(s.startswith("fallback") for s in sources), sources
    assert any(not s.startswith("fallback") for s in sources), sources
    configs = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(configs)) == len(configs)
    assert optuna.load_study(study_name="llm", storage=open_storage(url)).trials
