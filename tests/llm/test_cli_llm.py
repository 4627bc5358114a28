"""The LLM flags of the command line: --replay, -o, --llm-fallback, status and export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.llm.helpers import CASSETTES, METHOD_OPTIONS, copy_autoresearch

from centaur_hpo.cli import _parse_options, main


def centaur(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "centaur_hpo.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_parse_options() -> None:
    got = _parse_options(
        [
            "n_warm=3",
            "alpha=-0.2",
            "fallback=true",
            "ask_bounds=No",
            "refiner=tpe",
            "task=Tune a GPT: fast",
            "x=[1, 2]",
        ]
    )
    assert got == {
        "n_warm": 3,
        "alpha": -0.2,
        "fallback": True,
        "ask_bounds": False,
        "refiner": "tpe",
        "task": "Tune a GPT: fast",
        "x": [1, 2],
    }


def test_replay_from_the_command_line(tmp_path: Path) -> None:
    copy_autoresearch(tmp_path)
    hardware = METHOD_OPTIONS["llm_agent"]["hardware"]
    out = centaur(
        "tune",
        "train.py",
        "--space",
        "autoresearch",
        "--method",
        "llm_agent",
        "--trials",
        "3",
        "--trial-budget",
        "1",
        "--replay",
        str(CASSETTES / "llm_agent.jsonl"),
        "-o",
        f"hardware={hardware}",
        cwd=tmp_path,
        env={"OPENAI_API_KEY": "sk-never-printed-0123456789"},
    )
    assert out.returncode == 0, out.stderr
    assert "llm        2 calls (0 failed" in out.stdout
    recorded = json.loads((CASSETTES / "llm_agent.trials.json").read_text())
    best = json.loads(centaur("best", cwd=tmp_path).stdout)
    assert best["params"] in [t["params"] for t in recorded]
    status = centaur("status", cwd=tmp_path)
    assert "llm      2 calls" in status.stdout and "of LLM time" in status.stdout
    export = centaur("export", "-o", "t.csv", "--llm-calls", "calls.jsonl", cwd=tmp_path)
    assert export.returncode == 0 and "4 LLM requests" in export.stdout
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert [json.loads(x)["provider"] for x in lines] == ["replay"] * 4
    everything = out.stdout + out.stderr + status.stdout + (tmp_path / "calls.jsonl").read_text()
    assert "sk-never-printed" not in everything


def test_bad_llm_flags_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_autoresearch(tmp_path)
    monkeypatch.chdir(tmp_path)
    base = ["tune", "train.py", "--space", "autoresearch", "--trials", "2", "--trial-budget", "1"]

    def run(*args: str) -> tuple[int, str]:
        code = main([*base, *args])
        out = capsys.readouterr()
        return code, out.out + out.err

    code, text = run("--method", "llm_agent", "--llm", "local", "--replay", "x.jsonl")
    assert code == 2 and "not both" in text
    code, text = run("--method", "tpe", "--llm-fallback")
    assert code == 2 and "apply to LLM methods" in text
    code, text = run("--method", "llm_agent", "--llm", "gpt4")
    assert code == 2 and "unknown LLM spec" in text
    code, text = run("--method", "llambo", "--llm", "local", "-o", "n_candidate=2")
    assert code == 2 and "n_candidates" in text
    # A server that is down: the study stops naming it; the trial that ran is kept.
    code, text = run(
        "--method",
        "llm_agent",
        "--llm",
        "openai:m@http://127.0.0.1:9/v1",
        "-o",
        "retries=0",
        "-o",
        "backoff_s=0",
        "--study",
        "down",
    )
    assert "stopped" in text and "3 consecutive calls" in text and "http://127.0.0.1:9/v1" in text
    assert "trial    0 ok" in text


def test_hardware_text_comes_from_the_enforced_settings() -> None:
    from centaur_hpo.api import hardware_text

    text = hardware_text("cuda", 76 * 2**30, 300)
    assert "GPU" in text and "memory cap 76 GiB per trial (PyTorch's CUDA memory fraction)" in text
    assert "each trial trains for 300 s" in text
    assert "memory cap" not in hardware_text("cpu", None, None)
