"""Run one trial: a training script in its own process group, under budget, timeout and memory cap.

Everything about subprocesses lives here. A trial ends in exactly one :data:`OUTCOMES` class,
decided from what the harness itself observed (exit status, its own timer, the memory limit it
set) and from the output the script printed.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from centaur_hpo.metrics import has_fail_marker, is_finite_number, parse_metrics

OUTCOMES = ("ok", "oom", "diverged", "timeout", "crash", "no_metric")

BUDGET_ENV = "CENTAUR_TRIAL_BUDGET"
CUDA_CAP_ENV = "CENTAUR_CUDA_MEMORY_BYTES"

_OOM = re.compile(
    r"MemoryError|out of memory|OutOfMemoryError|can't allocate memory|Cannot allocate memory"
    r"|std::bad_alloc|CUDA error: out of memory|failed to allocate",
    re.IGNORECASE,
)
_NAN = re.compile(r"\bloss\b.*\bnan\b|\bnan loss\b|diverged", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "tib": 2**40,
}


def parse_bytes(text: str | int | float | None) -> int | None:
    """``"3GiB"`` -> 3221225472. Plain numbers are bytes. None stays None."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return int(text)
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(
            f"cannot read memory size {text!r}; write it like '3GiB', '512MiB' or '76GB'"
        )
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class TrialSpec:
    """Everything the runner needs to run one trial of a script in ``trial_dir``."""

    command: list[str]
    trial_dir: Path
    metric: str = "val_bpb"
    trial_budget: float | None = None
    timeout: float | None = None
    memory_cap: int | None = None
    device: str = "cpu"
    gpu: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    trust_script_timing: bool = True
    #: A :class:`centaur_hpo.sandbox.Sandbox` to run the command in (untrusted code), or None.
    sandbox: Any = None
    #: Extra folders the sandboxed command may write besides ``trial_dir``.
    writable: list[Path] = field(default_factory=list)
    #: Paths shown read-only inside the sandbox even if they lie in a hidden folder.
    readonly: list[Path] = field(default_factory=list)


@dataclass
class TrialResult:
    """What one trial did. ``value`` is set only for outcome ``ok``."""

    outcome: str
    value: float | None
    metrics: dict[str, Any]
    exit_code: int | None
    error: str | None
    time_wall: float
    time_startup: float | None
    time_training: float | None
    time_eval: float | None
    stdout_path: str
    stderr_path: str
    sandbox: dict[str, Any] | None = None  # what the sandbox enforced, when there was one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tail(path: Path, n_lines: int = 20, max_bytes: int = 64_000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-n_lines:])


def _kill_group(pgid: int, zombies_are_dead: bool = False) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after a short grace.

    ``zombies_are_dead`` is for sandboxed trials (see :func:`_group_alive`): there the kernel
    has already killed everything in the trial's PID namespace when its init died.
    """
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pgid, zombies_are_dead):
                return
            time.sleep(0.05)


def _group_alive(pgid: int, zombies_are_dead: bool = False) -> bool:
    """True while a process of the group answers signal 0 (optionally: and is no zombie).

    A zombie still answers signal 0, and an orphaned one (bubblewrap's PID-namespace init
    outlives the bwrap process we started) waits for the system's init to reap it, which can
    take seconds: without ``zombies_are_dead`` every sandboxed trial would sit out the grace.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not zombies_are_dead:
        return True
    try:
        pids = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:  # no /proc (not Linux): trust signal 0
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _sitecustomize_dir() -> Path:
    return Path(__file__).with_name("_trial_site")


def build_env(spec: TrialSpec) -> dict[str, str]:
    env = dict(os.environ)
    env.update(spec.env)
    env["PYTHONUNBUFFERED"] = "1"
    if spec.trial_budget is not None:
        env[BUDGET_ENV] = f"{spec.trial_budget:g}"
    if spec.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = spec.gpu
    if spec.device == "cuda" and spec.memory_cap:
        env[CUDA_CAP_ENV] = str(spec.memory_cap)
        site = str(_sitecustomize_dir())
        env["PYTHONPATH"] = site + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_trial(spec: TrialSpec) -> TrialResult:
    """Run ``spec.command`` in ``spec.trial_dir`` and classify the outcome.

    The process gets a new session (so a new process group); on timeout, or if it leaves
    children behind, the whole group is killed. On CPU the memory cap is an address-space limit
    (RLIMIT_AS); for CUDA scripts it becomes PyTorch's per-process memory fraction.
    """
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = trial_dir / "stdout.log", trial_dir / "stderr.log"
    cap = spec.memory_cap if spec.device == "cpu" else None

    def limit() -> None:  # runs in the child before exec
        if cap:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    command, env = list(spec.command), build_env(spec)
    sandbox_record = None
    sandboxed = spec.sandbox is not None
    if spec.sandbox is not None:
        command, env, sandbox_record = spec.sandbox.wrap(
            command, env, trial_dir, writable=spec.writable, readonly=spec.readonly
        )

    first_output: list[float] = []
    start = time.monotonic()
    with out_path.open("wb") as out_f, err_path.open("wb") as err_f:
        proc = subprocess.Popen(
            command,
            cwd=trial_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err_f,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=limit,
        )

        def pump() -> None:
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                if not first_output:
                    first_output.append(time.monotonic())
                out_f.write(chunk)
                out_f.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid, sandboxed)
            proc.wait()
        except BaseException:
            _kill_group(proc.pid, sandboxed)
            proc.wait()
            raise
        _kill_group(proc.pid, sandboxed)  # children the script left behind
        reader.join(timeout=5)
    wall = time.monotonic() - start
    stdout = out_path.read_text(errors="replace")
    metrics = parse_metrics(stdout)
    rc = proc.returncode
    outcome, value, error = classify(
        rc, timed_out, stdout, _tail(err_path, 200), metrics, spec.metric, bool(spec.memory_cap)
    )
    if outcome != "ok" and error is None:
        error = _tail(err_path) or _tail(out_path)
    startup = first_output[0] - start if first_output else None
    training = metrics.get("training_seconds") if spec.trust_script_timing else None
    training = float(training) if is_finite_number(training) else None
    evaluation = None
    if training is not None:
        evaluation = max(0.0, wall - (startup or 0.0) - training)
    return TrialResult(
        outcome=outcome,
        value=value,
        metrics=metrics,
        exit_code=rc,
        error=error,
        time_wall=wall,
        time_startup=startup,
        time_training=training,
        time_eval=evaluation,
        stdout_path=str(out_path),
        stderr_path=str(err_path),
        sandbox=sandbox_record,
    )


def classify(
    returncode: int | None,
    timed_out: bool,
    stdout: str,
    stderr_tail: str,
    metrics: Mapping[str, Any],
    metric: str,
    memory_capped: bool,
) -> tuple[str, float | None, str | None]:
    """Decide the one outcome class of a finished trial: (outcome, value, error)."""
    if timed_out:
        return "timeout", None, "killed by the harness after the trial's wall-clock timeout"
    value = metrics.get(metric)
    text = stdout[-20_000:] + "\n" + stderr_tail
    if returncode == 0:
        if has_fail_marker(stdout):
            return "diverged", None, "the script printed FAIL"
        if value is None:
            return "no_metric", None, f"exited 0 but printed no {metric!r} (summary block or JSON)"
        if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf"):
            return "diverged", None, f"{metric} is {value}"
        if not is_finite_number(value):
            return (
                "diverged" if isinstance(value, float) else "no_metric",
                None,
                (f"{metric} is not a finite number: {value!r}"),
            )
        return "ok", float(value), None
    lines = [ln for ln in stderr_tail.splitlines() if ln.strip()][-12:]
    last = "\n".join(lines)
    if _OOM.search(text):
        return "oom", None, last or "out of memory"
    if returncode is not None and returncode == -signal.SIGKILL and memory_capped:
        return "oom", None, "killed by SIGKILL under a memory cap (likely the kernel's OOM killer)"
    if (
        has_fail_marker(stdout)
        or _NAN.search(text)
        or (isinstance(value, float) and not is_finite_number(value))
    ):
        return "diverged", None, last or "the script printed FAIL"
    return "crash", None, f"exit code {returncode}" + (f"\n{last}" if last else "")


def python_command(script_name: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, script_name]
