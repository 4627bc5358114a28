"""The study loop: ask -> run -> tell, with budget accounting, heartbeats and exact resume.

The Optuna storage is the single source of truth. Every trial records the parameters as run,
its outcome, every parsed metric and the split of its time; methods keep their state in the
study's system attributes. A trial left RUNNING by a dead process (SIGKILL, power loss, a
preempted node) is marked ``interrupted`` and enqueued again with the same parameters, so
running the same command again continues the study where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.evaluate import Evaluator
from centaur_hpo.methods.base import (
    NOT_RUN_KEY,
    OUTCOME_KEY,
    RERUN_KEY,
    SOURCE_KEY,
    ProposalError,
)
from centaur_hpo.records import (
    STUDY_INFO_KEY,
    best_trial,
    charged_seconds,
    get_study_attr,
    is_finite,
    ok_trials,
    set_study_attr,
)
from centaur_hpo.runner import TrialResult
from centaur_hpo.storage import (
    is_transient_db_error,
    lock_is_shared,
    retry_db,
    set_trial_attrs,
    study_lock,
)

WORKER_KEY = "centaur:worker"
HEARTBEAT_KEY = "centaur:heartbeat"
STOP_KEY = "centaur:stop_requested"

FailurePolicy = Literal["penalty", "constraint", "ignore"]
Clock = Literal["training", "wall"]

#: How each failure policy tells a failed trial to the optimizer.
FAILURE_POLICIES = {
    "penalty": "told as a completed trial with the penalty value (the paper's 100.0 for val_bpb)",
    "constraint": "told with the penalty value and marked infeasible, so TPE/GP model feasibility",
    "ignore": "told as FAIL: samplers skip it (TPE/GP never learn where failures are)",
}


class StudyStopped(RuntimeError):
    """The study stopped before its budget was used (the message says why and what to do)."""


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pstart": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _alive(identity: dict[str, Any]) -> bool:
    pid = identity.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _process_state(pid) in ("Z", "X"):  # killed, not yet reaped by its parent: dead
        return False
    start = identity.get("pstart")
    return start is None or _process_start(pid) == start


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@dataclass
class Budget:
    """A compute budget: seconds on a clock and/or a number of trials."""

    seconds: float | None = None
    clock: Clock = "training"
    n_trials: int | None = None
    #: charge the time a method spent proposing (its LLM calls) to the budget; the paper did not
    include_llm: bool = False

    def describe(self) -> str:
        parts = []
        if self.seconds is not None:
            llm = " + LLM time" if self.include_llm and self.clock != "wall" else ""
            parts.append(f"{format_duration(self.seconds)} of {self.clock} time{llm}")
        if self.n_trials is not None:
            parts.append(f"{self.n_trials} trials")
        return " or ".join(parts) or "unlimited"


def parse_duration(text: str | float | int | None) -> float | None:
    """``"24h"``, ``"10m"``, ``"90s"``, ``"1h30m"`` or plain seconds -> seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip().lower()
    try:
        return float(s)
    except ValueError:
        pass
    total, num = 0.0, ""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    for ch in s:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
        else:
            raise ValueError(
                f"cannot read duration {text!r}; write it like '24h', '10m', '1h30m' or '90s'"
            )
    if num:
        raise ValueError(f"duration {text!r} ends in a number without a unit (h, m or s)")
    return total


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


@dataclass
class StudyRunner:
    """Run trials of ``evaluator`` proposed by ``study.sampler`` until the budget is used."""

    study: optuna.Study
    evaluator: Evaluator
    budget: Budget = field(default_factory=Budget)
    failure_policy: FailurePolicy = "penalty"
    default_first: bool = True
    n_jobs: int = 1
    slots: list[str | None] | None = None
    heartbeat_interval: float = 5.0
    grace_period: float = 60.0
    progress: Callable[[str], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    no_metric_patience: int = 3
    #: seconds a worker rides out an unreachable database (retrying with backoff) before failing
    db_patience: float = 600.0
    #: how often a running worker looks for trials of dead workers (default: heartbeat_interval)
    recover_interval: float | None = None

    def __post_init__(self) -> None:
        self.space = self.evaluator.space
        self.worker = worker_identity()
        self._lock = threading.RLock()
        self._running: dict[int, float] = {}  # trial id -> start time
        self._ask_time: dict[int, float] = {}  # trial id -> seconds the method took to propose
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._started = time.monotonic()
        self._wall_before = 0.0
        self._hb_thread: threading.Thread | None = None
        self._last_recover = time.monotonic()

    # -- helpers -------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def _storage(self):  # type: ignore[no-untyped-def]
        return self.study._storage

    def _set_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        set_trial_attrs(self._storage(), trial_id, user=attrs)

    def used(self) -> float:
        """Budget used so far, on the budget's clock, over the whole study (all runs)."""
        return charged_seconds(self.study)

    def n_run(self) -> int:
        """Trials that ran or are running; interrupted and never-run trials do not count."""
        n = 0
        for t in self.study.get_trials(deepcopy=False):
            if (
                t.state in (TrialState.COMPLETE, TrialState.RUNNING)
                or t.state == TrialState.FAIL
                and t.user_attrs.get(OUTCOME_KEY)
                not in (
                    "interrupted",
                    "not_run",
                    None,
                )
            ):
                n += 1
        return n

    def budget_left(self) -> bool:
        if self._stop.is_set():
            return False
        if get_study_attr(self.study, STOP_KEY):
            self._stop_reason = "a stop was requested (centaur stop); running trials finished"
            return False
        b = self.budget
        if b.n_trials is not None and self.n_run() >= b.n_trials:
            return False
        if b.seconds is None:
            return True
        # A trial starts only if it is expected to fit: the budget is a promise, not a threshold
        # that the last trial may overshoot (the reference code let it). Trials still running
        # (this worker's or others') are counted at the expected cost too.
        cost = self.expected_trial_cost()
        running = sum(
            1 for t in self.study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
        )
        return self.used() + (running + 1) * cost <= b.seconds + 1e-9

    def expected_trial_cost(self) -> float:
        """What the next trial is expected to charge: the per-trial budget where one is set (a
        script stops training at it), else the median charge of the trials so far, else 0."""
        trial_budget = getattr(self.evaluator, "trial_budget", None)
        if trial_budget:
            return float(trial_budget)
        charges = sorted(
            float(c)
            for t in self.study.get_trials(deepcopy=False)
            if t.state != TrialState.RUNNING and is_finite(c := t.user_attrs.get("time_charged"))
        )
        return charges[len(charges) // 2] if charges else 0.0

    # -- the study's identity ------------------------------------------------------------------
    def record_info(self) -> None:
        with study_lock(self._storage(), self.study._study_id):
            self._record_info()

    def _record_info(self) -> None:
        current = get_study_attr(self.study, STUDY_INFO_KEY)
        info = {
            "metric": self.space.metric,
            "direction": self.space.direction,
            "failure_policy": self.failure_policy,
            "failure_value": self.failure_value(),
            "budget": {
                "seconds": self.budget.seconds,
                "clock": self.budget.clock,
                "n_trials": self.budget.n_trials,
                "include_llm": self.budget.include_llm,
            },
            "space": {n: p.to_toml_dict() for n, p in self.space.params.items()},
            "evaluator": self.evaluator.describe(),
            **self.info,
        }
        if current:
            old = json.loads(current)
            if old.get("space") and old["space"] != info["space"]:
                raise StudyStopped(
                    "this study was created with a different search space; use a new --study "
                    "name (or the same space) to avoid mixing incompatible trials"
                )
            old.update({k: v for k, v in info.items() if k in ("budget", "evaluator")})
            info = {**info, **old}
        set_study_attr(self.study, STUDY_INFO_KEY, json.dumps(info, default=str))

    def failure_value(self) -> float:
        """The value a failed trial is told as: the space's, else worse than anything seen."""
        v = self.space.failure_value
        if v is not None:
            return float(v)
        values = [t.user_attrs["value"] for t in ok_trials(self.study)]
        if not values:
            return 1e6 if self.space.direction == "minimize" else -1e6
        lo, hi = min(values), max(values)
        span = max(hi - lo, abs(hi) * 0.1, 1e-9)
        return hi + span if self.space.direction == "minimize" else lo - span

    # -- resume --------------------------------------------------------------------------------
    def recover(self) -> list[int]:
        """Fail and re-enqueue every RUNNING trial whose worker is gone; return their numbers.

        A worker on this host is dead when its process is; one on another host when its
        heartbeat is older than the grace period. It runs under the study lock, so exactly one
        worker re-queues a given trial, and a trial without an owner is an orphan of a worker
        that died while proposing it (every proposal stamps its owner before the lock is freed).
        """
        with study_lock(self._storage(), self.study._study_id):
            return self._recover()

    def _recover(self) -> list[int]:
        now = time.time()
        requeued = []
        orphans_known = lock_is_shared(self._storage())
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(WORKER_KEY)
            beat = t.system_attrs.get(HEARTBEAT_KEY)
            started = t.datetime_start.timestamp() if t.datetime_start else now
            last = beat if isinstance(beat, int | float) else started
            if owner and owner.get("host") == self.worker["host"]:
                stale = not _alive(owner)
            elif not owner and orphans_known:
                stale = True
            else:
                stale = now - last > self.grace_period
            if not stale or t._trial_id in self._running:
                continue
            if self._fail_and_requeue(t, max(0.0, last - started)):
                requeued.append(t.number)
        self._last_recover = time.monotonic()
        if requeued:
            self._say(
                f"resume: trial(s) {requeued} were interrupted; re-running with the same parameters"
            )
        return requeued

    def _maybe_recover(self, force: bool = False) -> None:
        every = (
            self.recover_interval if self.recover_interval is not None else self.heartbeat_interval
        )
        if force or time.monotonic() - self._last_recover >= every:
            self.recover()

    def _suspect_running(self) -> bool:
        """True while a trial of another worker missed heartbeats: it may be re-queued soon."""
        now, late = time.time(), 2 * self.heartbeat_interval + 1.0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t._trial_id in self._running:
                continue
            beat = t.system_attrs.get(HEARTBEAT_KEY)
            start = t.datetime_start.timestamp() if t.datetime_start else now
            if now - (beat if isinstance(beat, int | float) else start) > late:
                return True
        return False

    def _fail_and_requeue(self, t: FrozenTrial, ran_for: float) -> bool:
        storage = self._storage()
        not_run = NOT_RUN_KEY in t.system_attrs or not t.params
        attrs = {
            OUTCOME_KEY: "interrupted",
            "error": "the worker running this trial died",
            "time_charged": 0.0 if not_run else ran_for,
        }
        try:
            self._set_attrs(t._trial_id, attrs)
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                return False
        except (RuntimeError, ValueError):  # another worker got there first
            return False
        if not_run or len(t.params) < len(self.space):
            return False
        root = t.user_attrs.get(RERUN_KEY, t.number)
        self.study.enqueue_trial(
            dict(t.params),
            user_attrs={RERUN_KEY: root, "source": t.system_attrs.get(SOURCE_KEY)},
            skip_if_exists=False,
        )
        return True

    # -- heartbeats ----------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            with self._lock:
                ids = list(self._running)
            for tid in ids:
                # A missed beat is not fatal; the next one retries.
                with contextlib.suppress(Exception):
                    self._storage().set_trial_system_attr(tid, HEARTBEAT_KEY, time.time())

    # -- one trial -----------------------------------------------------------------------------
    def _ask(self) -> optuna.Trial | None:
        """The next trial, or None when the budget is used or the study stopped.

        Runs under the study lock: the budget check, the method's proposal (its saved state) and
        the stamping of the owner are one step across all workers. When the budget looks used
        while another worker's trial has missed heartbeats, it waits: that trial may be re-queued
        and must then be run by someone.
        """
        while True:
            with study_lock(self._storage(), self.study._study_id), self._lock:
                self._maybe_recover()
                if self.budget_left():
                    return self._ask_locked()
                self._maybe_recover(force=True)  # a dead worker's trial frees its budget
                if self.budget_left():
                    return self._ask_locked()
                if self._stop.is_set() or self._stop_reason or not self._suspect_running():
                    return None
            if self._stop.wait(self.heartbeat_interval):
                return None

    def _ask_locked(self) -> optuna.Trial | None:
        with self._lock:
            t0 = time.monotonic()
            try:
                trial = self.study.ask(self.space.distributions())
            except ProposalError as e:
                self._mark_unrun(str(e))
                self._stop_reason = f"the method could not propose a configuration: {e}"
                self._stop.set()
                return None
            ask_time = time.monotonic() - t0
            retry_db(
                lambda: set_trial_attrs(
                    self._storage(),
                    trial._trial_id,
                    user={"time_optimizer": ask_time},
                    system={WORKER_KEY: self.worker, HEARTBEAT_KEY: time.time()},
                ),
                patience=self.db_patience,
                say=self._say,
                what=f"claiming trial {trial.number}",
            )
            self._running[trial._trial_id] = time.monotonic()
            self._ask_time[trial._trial_id] = ask_time
            return trial

    def _mark_unrun(self, reason: str) -> None:
        """A proposal failed after Optuna created its trial: record it as never run."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if WORKER_KEY in t.system_attrs:
                continue
            storage = self._storage()
            storage.set_trial_system_attr(t._trial_id, NOT_RUN_KEY, reason[:2000])
            self._set_attrs(
                t._trial_id, {OUTCOME_KEY: "not_run", "error": reason[:2000], "time_charged": 0.0}
            )
            with contextlib.suppress(RuntimeError, ValueError):
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)

    def _config_of(self, trial: optuna.Trial) -> dict[str, Any]:
        return {n: trial.params[n] for n in self.space.names}

    def _tell(self, trial: optuna.Trial, result: TrialResult, slot: str | None) -> None:
        ask_time = self._ask_time.pop(trial._trial_id, 0.0)
        with_ask = self.budget.clock == "wall" or self.budget.include_llm
        charge = result.time_wall + (ask_time if with_ask else 0.0)
        attrs: dict[str, Any] = {
            OUTCOME_KEY: result.outcome,
            "value": result.value,
            "metrics": {k: v for k, v in result.metrics.items() if _jsonable(v)},
            "error": (result.error or "")[-2000:] or None,
            "exit_code": result.exit_code,
            "time_wall": result.time_wall,
            "time_startup": result.time_startup,
            "time_training": result.time_training,
            "time_eval": result.time_eval,
            "time_charged": charge,
            "logs": os.path.dirname(result.stdout_path) or None,
            "slot": slot,
            "finished_at": datetime.now(UTC).isoformat(),
        }

        tries: list[bool] = []

        def write() -> bool:
            """Record the result; False when the trial was already failed by another worker."""
            retry = bool(tries)
            tries.append(True)
            # A retry after a lost answer may find the trial already told.
            if retry:
                frozen = self._storage().get_trial(trial._trial_id)
                if frozen.state.is_finished():
                    return frozen.user_attrs.get(OUTCOME_KEY) != "interrupted"
            try:
                self._set_attrs(trial._trial_id, attrs)
                if self.failure_policy == "constraint":
                    # > 0 is infeasible for Optuna's constrained TPE and GP samplers.
                    trial.set_constraint("failed", -1.0 if result.outcome == "ok" else 1.0)
                if result.outcome == "ok":
                    self.study.tell(trial, result.value, skip_if_finished=True)
                elif self.failure_policy == "ignore":
                    self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                else:
                    self.study.tell(trial, self.failure_value(), skip_if_finished=True)
            except UpdateFinishedTrialError:
                # This worker stalled past the grace period (a frozen host, a long outage) and
                # another one failed the trial as dead and re-queued it.
                return False
            return True

        with self._lock:
            told = retry_db(write, patience=self.db_patience, say=self._say, what="recording")
            self._running.pop(trial._trial_id, None)
        if not told:
            self._say(
                f"trial {trial.number} finished after another worker declared it dead and "
                "re-queued it; this result is dropped and the re-run counts instead"
            )

    def _interrupted(self, trial: optuna.Trial) -> None:
        with self._lock:
            start = self._running.pop(trial._trial_id, time.monotonic())
            frozen = self._storage().get_trial(trial._trial_id)
            self._fail_and_requeue(frozen, time.monotonic() - start)

    def _run_one(self, slot: str | None) -> bool:
        trial = self._ask()
        if trial is None:
            return False
        config = self._config_of(trial)
        self._say(f"trial {trial.number:>4} start  {_short(config)}")
        try:
            result = self.evaluator.evaluate(trial.number, config, slot)
        except BaseException:
            self._interrupted(trial)
            raise
        self._tell(trial, result, slot)
        self._report(trial.number, result)
        self._sanity_check()
        return True

    def _sanity_check(self) -> None:
        """Stop early when the script evidently never prints the metric (bad setup, not bad luck)."""
        trials = [t for t in self.study.get_trials(deepcopy=False) if OUTCOME_KEY in t.user_attrs]
        first = [t.user_attrs[OUTCOME_KEY] for t in trials[: self.no_metric_patience]]
        if len(first) == self.no_metric_patience and all(o == "no_metric" for o in first):
            self._stop_reason = (
                f"the first {len(first)} trials exited normally but printed no "
                f"{self.space.metric!r}. Make the script print a summary block ('---' then "
                f"'{self.space.metric}: VALUE') or a JSON line, or name the metric it prints "
                "with --metric. The trials are recorded; see their stdout.log."
            )
            self._stop.set()

    def _report(self, number: int, result: TrialResult) -> None:
        best = best_trial(self.study, self.space.direction)
        best_text = f"{best.user_attrs['value']:.6g} (#{best.number})" if best else "-"
        value = (
            f"{self.space.metric}={result.value:.6g}"
            if result.value is not None
            else (result.error or "").splitlines()[-1:] or [""]
        )
        if isinstance(value, list):
            value = value[0][:60]
        used = self.used()
        budget = self.budget.seconds
        left = f", {format_duration(budget - used)} left" if budget else ""
        self._say(
            f"trial {number:>4} {result.outcome:<9} {value} | best {best_text} | "
            f"{format_duration(used)} used{left}"
        )

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        retry_db(self._start, patience=self.db_patience, say=self._say, what="start-up")
        self._hb_thread = threading.Thread(target=self._beat, daemon=True)
        self._hb_thread.start()
        slots = self.slots or [None] * max(1, self.n_jobs)
        try:
            if len(slots) == 1:
                self._work(slots[0])
            else:
                errors: list[BaseException] = []

                def work(slot: str | None) -> None:
                    try:
                        self._work(slot)
                    except BaseException as e:  # noqa: BLE001 - surfaced below
                        errors.append(e)
                        self._stop.set()

                threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in slots]
                for th in threads:
                    th.start()
                for th in threads:
                    while th.is_alive():
                        th.join(0.5)
                if errors:
                    raise errors[0]
        finally:
            self._stop.set()
        if self._stop_reason and "stop was requested" not in self._stop_reason:
            raise StudyStopped(self._stop_reason)
        return self.summary()

    def _start(self) -> None:
        self.record_info()
        self.recover()
        with study_lock(self._storage(), self.study._study_id):
            # Under the lock: workers starting together enqueue the default only once.
            if self.default_first and not self.study.get_trials(deepcopy=False):
                self.study.enqueue_trial(
                    self.space.default_config(), user_attrs={"source": "default"}
                )

    def _work(self, slot: str | None) -> None:
        """Run trials until the budget is used; ride out a database outage up to db_patience."""
        delay, outage = 0.2, None
        while True:
            try:
                if not self._run_one(slot):
                    return
                delay, outage = 0.2, None
            except Exception as e:
                # UpdateFinishedTrialError: this worker lost the database in the middle of a
                # proposal and another one failed the half-made trial as an orphan; ask again.
                if not (is_transient_db_error(e) or isinstance(e, UpdateFinishedTrialError)):
                    raise
                outage = outage or time.monotonic()
                if time.monotonic() - outage > self.db_patience:
                    raise
                if delay == 0.2:
                    self._say(f"storage unavailable ({type(e).__name__}); retrying with backoff")
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def summary(self) -> dict[str, Any]:
        best = best_trial(self.study, self.space.direction)
        trials = self.study.get_trials(deepcopy=False)
        return {
            "study": self.study.study_name,
            "n_trials": len([t for t in trials if t.state != TrialState.WAITING]),
            "used_seconds": self.used(),
            "budget": self.budget.describe(),
            "best_value": best.user_attrs["value"] if best else None,
            "best_params": dict(best.params) if best else None,
            "best_number": best.number if best else None,
            "stopped": self._stop_reason,
        }


def _jsonable(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, int | str | bool) or v is None


def _short(config: dict[str, Any], limit: int = 110) -> str:
    text = " ".join(f"{k}={_fmt(v)}" for k, v in config.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
