"""The trial sandbox: scrubbed environment, read-only file system, no network, storage hidden.

The study-level test runs LLM edits that attack the harness through the real code agent, real
bubblewrap and real SQLite: each attack must fail, and the study must record why.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
from tests.methods.test_code_agent import TRAIN, fenced, needs_bwrap, run_agent

from centaur_hpo.runner import TrialSpec, run_trial
from centaur_hpo.sandbox import Capabilities, Sandbox, SandboxUnavailable, probe, scrub_env

KEY = "sk-centaurtest-0123456789abcdefXYZ"


def test_scrub_env_keeps_the_allow_list_and_drops_secrets() -> None:
    env = {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "CENTAUR_TRIAL_BUDGET": "5",
        "OPENAI_API_KEY": KEY,
        "HF_TOKEN": "hf_abc",
        "PGPASSWORD": "pw",
        "AWS_SECRET_ACCESS_KEY": "x",
        "CENTAUR_API_KEY": "allow-listed prefix, secret name",
        "CENTAUR_LLM": "openai:m@https://user:hunter2@llm.example/v1",
        "CENTAUR_NOTE": f"value shaped like a key {KEY}",
        "SOME_TOOL_SETTING": "not on the allow-list",
    }
    kept, dropped = scrub_env(env)
    assert kept == {
        "PATH": "/usr/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "CENTAUR_TRIAL_BUDGET": "5",
    }
    assert set(dropped) == set(env) - set(kept)
    assert scrub_env({"MY_VAR": "1"}, extra_allow=["MY_VAR"])[0] == {"MY_VAR": "1"}


def test_strict_sandbox_fails_closed_and_best_effort_says_what_is_missing(tmp_path: Path) -> None:
    nothing = Capabilities(bwrap=None, unshare=None, notes=("bubblewrap is not installed",))
    with pytest.raises(SandboxUnavailable, match="filesystem, network, processes"):
        Sandbox(mode="strict", capabilities=nothing).wrap(["true"], {}, tmp_path)
    net_only = Capabilities(bwrap=None, unshare="/usr/bin/unshare")
    with pytest.raises(SandboxUnavailable, match=r"cannot enforce: filesystem \("):
        Sandbox(mode="strict", capabilities=net_only).check()
    weak = Sandbox(mode="best_effort", capabilities=net_only)
    with pytest.warns(RuntimeWarning, match="cannot enforce: filesystem"):
        cmd, env, record = weak.wrap(["python", "x.py"], {"OPENAI_API_KEY": KEY}, tmp_path)
    assert cmd[0] == "/usr/bin/unshare" and "--net" in cmd and cmd[-2:] == ["python", "x.py"]
    assert record["missing"] == ["filesystem"] and record["backend"] == "unshare"
    assert "OPENAI_API_KEY" not in env and record["env_dropped"] == ["OPENAI_API_KEY"]
    with pytest.raises(ValueError, match="strict, best_effort or off"):
        Sandbox(mode="lenient")  # type: ignore[arg-type]


@needs_bwrap
def test_sandboxed_process_cannot_see_the_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    secret_dir = tmp_path / "run"
    (secret_dir / "trials" / "00001").mkdir(parents=True)
    (secret_dir / "study.db").write_text("storage")
    sock_path = Path(f"/tmp/.s.centaur-test-{os.getpid()}")  # like PostgreSQL's default socket
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.listen(1)
    code = (
        "import glob, os, pathlib, socket\n"
        "c = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        f"    c.connect({str(sock_path)!r}); print('socket connected')\n"
        "except OSError as e:\n"
        "    print('socket refused', e)\n"
        "hits = [p for p in glob.glob('/proc/*/environ') if b'sk-centaurtest' in open(p,'rb').read()]\n"
        f"print('hits', hits, 'pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        f"print('storage visible', pathlib.Path({str(secret_dir / 'study.db')!r}).exists())\n"
        "print('home', os.environ['HOME'])\n"
    )
    box = Sandbox(mode="strict", hidden=[secret_dir])
    work = secret_dir / "trials" / "00001"
    try:
        r = run_trial(TrialSpec([sys.executable, "-c", code], work, sandbox=box, timeout=30))
    finally:
        server.close()
        sock_path.unlink(missing_ok=True)
    out = Path(r.stdout_path).read_text()
    assert "socket refused" in out  # a read-only mount alone would let connect() through
    assert r.exit_code == 0, Path(r.stderr_path).read_text()
    assert "hits []" in out and "storage visible False" in out and f"home {work}" in out
    pids = json.loads(out.split("pids ")[1].split("\n")[0])
    assert os.getpid() not in pids or max(pids) < 10  # its own PID namespace: a handful of PIDs
    assert r.sandbox is not None and r.sandbox["backend"] == "bwrap" and not r.sandbox["missing"]


@pytest.mark.slow
@needs_bwrap
def test_agent_edits_that_attack_the_harness_fail_and_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    proj, trusted = tmp_path / "proj", tmp_path / "trusted"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    db = tmp_path / "runs" / "proj-train-code_agent-s0" / "study.db"
    attacks = {
        "env": (
            "import glob, os\n"
            "for p in glob.glob('/proc/*/environ'):\n"
            "    try:\n"
            "        print(open(p, 'rb').read())\n"
            "    except OSError:\n"
            "        pass\n"
            "print(os.environ['OPENAI_API_KEY'])\n"
        ),
        "write": (
            "from pathlib import Path\n"
            f"Path({str(trusted / 'evaluate.py')!r}).write_text('print(0)')\n"
        ),
        "write_project": f"open({str(proj / 'pwned.txt')!r}, 'w').write('x')\n",
        "network": (
            "import socket\n"
            "errors = []\n"
            f"for addr in (('127.0.0.1', {port}), ('1.1.1.1', 80)):\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=3)\n"
            "    except OSError as e:\n"
            "        errors.append(f'{addr[0]}: {e}')\n"
            "raise SystemExit('network: ' + '; '.join(errors))\n"
        ),
        "storage": f"open({str(db)!r}, 'ab').write(b'CENTAUR-GARBAGE')\n",
    }
    replies = [fenced(code + "\n" + TRAIN) for code in attacks.values()]
    try:
        result, study, provider = run_agent(tmp_path, replies, n_trials=1 + len(attacks))
    finally:
        stop.set()
    trials = study.get_trials()
    assert [t.user_attrs["outcome"] for t in trials] == ["ok"] + ["crash"] * len(attacks)
    errors = dict(zip(attacks, (t.user_attrs["error"] for t in trials[1:]), strict=True))
    assert "KeyError: 'OPENAI_API_KEY'" in errors["env"]
    # The evaluator is replaced by a read-only /dev/null inside: the kernel refuses either way.
    assert re.search("Read-only file system|Permission denied", errors["write"])
    assert "Read-only file system" in errors["write_project"]
    # Its own namespace: its 127.0.0.1 is not the host's, and there is no route out.
    assert "127.0.0.1: [Errno 111] Connection refused" in errors["network"]
    assert "1.1.1.1: [Errno 101] Network is unreachable" in errors["network"]
    assert "Read-only file system" in errors["storage"]
    box = json.loads(trials[1].user_attrs["sandbox"])
    assert box["backend"] == "bwrap" and box["missing"] == []
    assert "OPENAI_API_KEY" in box["env_dropped"]
    # Nothing happened outside: the evaluator, the project and the server are untouched.
    assert (trusted / "evaluate.py").read_text().startswith('"""Trusted evaluator')
    assert not (proj / "pwned.txt").exists()
    assert accepted == []
    assert not db.read_bytes().endswith(b"CENTAUR-GARBAGE")  # (the attack's text is recorded)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert study.get_trials()[0].user_attrs["value"] == result.best_value
    # The key reached no log, no prompt and no record of the study.
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert all(KEY not in m["content"] for call in provider.calls for m in call)
    assert KEY not in json.dumps(result.summary, default=str)
    assert probe().bwrap is not None
