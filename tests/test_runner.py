"""Every outcome class, from real subprocesses."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from centaur_hpo.metrics import parse_metrics
from centaur_hpo.runner import TrialSpec, classify, parse_bytes, run_trial

SUMMARY = 'print("---"); print("val_bpb:          0.997900"); print("training_seconds: 0.1")'


def _run(tmp_path: Path, body: str, **kw) -> object:
    (tmp_path / "t.py").write_text(body)
    spec = TrialSpec(command=[sys.executable, "t.py"], trial_dir=tmp_path, **kw)
    return run_trial(spec)


def test_ok_with_summary_block(tmp_path: Path) -> None:
    r = _run(
        tmp_path,
        "import os\nprint('budget', os.environ['CENTAUR_TRIAL_BUDGET'])\n" + SUMMARY,
        trial_budget=7,
    )
    assert r.outcome == "ok" and r.value == pytest.approx(0.9979)
    assert r.metrics["training_seconds"] == 0.1
    assert "budget 7" in (tmp_path / "stdout.log").read_text()
    assert r.time_startup is not None and r.time_wall >= r.time_startup


def test_ok_with_json_line(tmp_path: Path) -> None:
    r = _run(tmp_path, 'import json; print(json.dumps({"val_bpb": 1.25, "steps": 3}))')
    assert r.outcome == "ok" and r.value == 1.25 and r.metrics["steps"] == 3


def test_oom_under_address_space_cap(tmp_path: Path) -> None:
    r = _run(tmp_path, "x = bytearray(2 * 1024**3)\n" + SUMMARY, memory_cap=parse_bytes("512MiB"))
    assert r.outcome == "oom", r.error
    assert "MemoryError" in r.error


def test_cuda_style_oom_message(tmp_path: Path) -> None:
    body = "import sys\nprint('torch.OutOfMemoryError: CUDA out of memory.', file=sys.stderr)\nsys.exit(1)"
    assert _run(tmp_path, body).outcome == "oom"


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    body = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open('child.pid', 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    t0 = time.monotonic()
    r = _run(tmp_path, body, timeout=1.5)
    assert r.outcome == "timeout"
    assert time.monotonic() - t0 < 15
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_fail_marker_and_nan_are_diverged(tmp_path: Path) -> None:
    r = _run(tmp_path, "import sys\nprint('step 10 loss nan')\nprint('FAIL')\nsys.exit(1)")
    assert r.outcome == "diverged"
    r = _run(tmp_path, 'print("---"); print("val_bpb: nan")')
    assert r.outcome == "diverged"


def test_fail_substring_is_not_a_failure(tmp_path: Path) -> None:
    body = 'print("FAILURES_SEEN: 0 (no FAIL here)")\n' + SUMMARY
    assert _run(tmp_path, body).outcome == "ok"


def test_crash_keeps_exit_code_and_last_error_lines(tmp_path: Path) -> None:
    r = _run(tmp_path, "raise ValueError('bad knob value')")
    assert r.outcome == "crash" and r.exit_code == 1
    assert "ValueError: bad knob value" in r.error


def test_no_metric(tmp_path: Path) -> None:
    r = _run(tmp_path, "print('training done, forgot to print the metric')")
    assert r.outcome == "no_metric" and "val_bpb" in r.error


def test_classify_is_total() -> None:
    assert classify(0, False, "", "", {}, "m", False)[0] == "no_metric"
    assert classify(-9, False, "", "", {}, "m", True)[0] == "oom"
    assert classify(-9, False, "", "", {}, "m", False)[0] == "crash"


def test_summary_block_parser_takes_last_block() -> None:
    text = "---\nval_bpb: 2.0\n...\n---\nval_bpb: 1.0\ndepth: 8\n"
    assert parse_metrics(text) == {"val_bpb": 1.0, "depth": 8}


def test_parse_bytes() -> None:
    assert parse_bytes("3GiB") == 3 * 2**30 and parse_bytes("76GB") == 76 * 2**30
    with pytest.raises(ValueError, match="cannot read memory size"):
        parse_bytes("lots")
