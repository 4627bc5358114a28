"""A benchmark grid: methods x seeds x tasks, one study per cell, all in one storage.

A cell is the study ``bench:{task}:{method}:s{seed}``. Its identity (method, seed, task and
what the grid asked of it) is written into the study's system attributes, and a second
attribute marks it finished. Running the same grid again therefore skips finished cells and
runs only the missing or unfinished ones.

Why an unfinished *simulated* cell starts again from scratch instead of continuing: an Optuna
sampler's random stream restarts when the process does, so a continued cell would differ from
an uninterrupted one. A simulated cell is fully determined by (method, seed, task) and takes
seconds, so re-running it loses nothing and keeps a resumed grid identical to an uninterrupted
one. A cell that trains real scripts continues instead (the study loop's own resume), because
there the trials are the expensive part.
"""

from __future__ import annotations

import json
import re
import sys
import time
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.bench.store import BufferedStudy, open_bench_storage, study_id_or_none
from centaur_hpo.bench.tasks import build_task, split_alias, task_kind
from centaur_hpo.methods import LLM_METHODS, METHODS
from centaur_hpo.study import Budget, StudyRunner, StudyStopped, parse_duration

CELL_KEY = "centaur:bench_cell"  # study system attr: the cell's identity (JSON)
DONE_KEY = "centaur:bench_done"  # study system attr: JSON {"finished_at", "stopped", ...}
GRID_FILE = "grid.json"  # in the grid's output folder: storage URL, command, cells


@dataclass(frozen=True)
class TaskRef:
    """A task as the grid names it (``alias``) and what runs (``spec``)."""

    alias: str
    spec: str

    @classmethod
    def parse(cls, item: str) -> TaskRef:
        alias, spec = split_alias(item)
        if not spec:
            raise ValueError(f"empty task in {item!r}")
        return cls(alias, spec)


@dataclass(frozen=True)
class CellJob:
    """Everything a worker needs to run one cell (picklable, so it travels to Dask workers)."""

    method: str
    seed: int
    task: str
    spec: str
    storage: str
    out_dir: str
    budget_seconds: float | None
    n_trials: int | None
    clock: str = "training"
    failure_policy: str = "penalty"
    failure_value: float | None = None
    default_first: bool = True
    llm: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    flush_every: int = 50

    @property
    def name(self) -> str:
        return cell_name(self.task, self.method, self.seed)

    def identity(self) -> dict[str, Any]:
        """What must match for a stored cell to count as this cell."""
        return {
            "method": self.method,
            "seed": self.seed,
            "task": self.task,
            "task_spec": self.spec,
            "budget_seconds": self.budget_seconds,
            "n_trials": self.n_trials,
            "clock": self.clock,
            "failure_policy": self.failure_policy,
            "failure_value": self.failure_value,
            "default_first": self.default_first,
            "method_options": self.method_options,
        }


def cell_name(task: str, method: str, seed: int) -> str:
    return f"bench:{task}:{method}:s{seed}"


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """``"0-4"``, ``"0,2,5"``, ``"0-2,7"``, an int (that many seeds from 0) or a list."""
    if isinstance(text, int):
        return list(range(text))
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards; write LOW-HIGH")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ValueError(f"cannot read seeds {text!r}; write e.g. 0-4 or 0,1,7")
    if not seeds:
        raise ValueError("no seeds given; write e.g. --seeds 0-4")
    return list(dict.fromkeys(seeds))


@dataclass
class GridSpec:
    """What a grid runs; built from flags, a TOML file or a preset (flags win)."""

    methods: list[str]
    seeds: list[int]
    tasks: list[TaskRef]
    budget_seconds: float | None = None
    n_trials: int | None = None
    clock: str = "training"
    failure_policy: str = "penalty"
    failure_value: float | None = None
    default_first: bool = True
    llm: str | None = None
    replay: str | None = None
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per-method overrides, e.g. {"llm_agent": {"seeds": [0, 1], "n_trials": 40}}: the embedded
    #: LLM is too slow for a full 24 h cell on every seed; the report states every override.
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    flush_every: int = 50

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from: {', '.join(METHODS)}")
        if not self.methods or not self.seeds or not self.tasks:
            raise ValueError("a grid needs --methods, --seeds and --tasks (or a --config file)")
        if self.budget_seconds is None and self.n_trials is None:
            raise ValueError("give a budget per cell (--budget 24h) or a number of trials")
        aliases = [t.alias for t in self.tasks]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"task names repeat: {aliases}; give each an alias (name=spec)")
        if self.clock not in ("training", "wall"):
            raise ValueError("clock must be 'training' or 'wall'")
        for m in self.limits:  # limits of methods left out of this grid do not apply
            if m not in METHODS:
                raise ValueError(f"limits given for unknown method {m!r}")

    def jobs(self, storage: str, out_dir: str | Path) -> list[CellJob]:
        """One job per cell; LLM cells first, since they take longest."""
        out: list[CellJob] = []
        for task in self.tasks:
            for method in self.methods:
                lim = self.limits.get(method, {})
                seeds = parse_seeds(lim["seeds"]) if "seeds" in lim else self.seeds
                n_trials = lim.get("n_trials", self.n_trials)
                budget = parse_duration(lim["budget"]) if "budget" in lim else self.budget_seconds
                for seed in seeds:
                    out.append(
                        CellJob(
                            method=method,
                            seed=seed,
                            task=task.alias,
                            spec=task.spec,
                            storage=storage,
                            out_dir=str(Path(out_dir).resolve()),
                            budget_seconds=budget,
                            n_trials=n_trials,
                            clock=self.clock,
                            failure_policy=self.failure_policy,
                            failure_value=self.failure_value,
                            default_first=self.default_first,
                            llm=self._llm_for(method, task.alias, seed),
                            method_options=dict(self.method_options.get(method, {})),
                            flush_every=self.flush_every,
                        )
                    )
        out.sort(key=lambda j: j.method not in LLM_METHODS)
        return out

    def _llm_for(self, method: str, task: str, seed: int) -> str | None:
        if method not in LLM_METHODS:
            return None
        if self.replay:
            return replay_spec(self.replay, cell_name(task, method, seed))
        return self.llm

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = [f"{t.alias}={t.spec}" if t.alias != t.spec else t.spec for t in self.tasks]
        return d


def replay_spec(source: str, name: str) -> str:
    """The LLM spec that replays cell ``name``: a folder of ``<cell>.jsonl`` or a storage URL."""
    path = Path(source)
    if path.is_dir():
        cassette = path / (safe_name(name) + ".jsonl")
        return f"replay:{cassette}"
    if "://" in source:
        return f"replay:{source}#{name}"
    raise ValueError(
        f"--replay {source!r}: give a folder of cassettes (<cell>.jsonl) or the storage URL of "
        "a grid whose LLM calls to replay"
    )


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name)


def absolute_storage(url: str) -> str:
    """SQLite URLs with relative paths become absolute, so every worker opens the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        path = Path(url[len(prefix) :]).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a grid TOML file; unknown keys are an error (a typo would otherwise be ignored)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no grid config file {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"grid config {path}: {e}") from None
    known = {
        "methods",
        "seeds",
        "tasks",
        "budget",
        "trials",
        "clock",
        "failure_policy",
        "failure_value",
        "default_first",
        "llm",
        "replay",
        "method_options",
        "limits",
        "storage",
        "out",
        "jobs",
        "flush_every",
    }
    extra = set(data) - known
    if extra:
        raise ValueError(
            f"grid config {path}: unknown key(s) {sorted(extra)}; known: {sorted(known)}"
        )
    return data


def spec_from_config(data: dict[str, Any]) -> GridSpec:
    tasks_raw = data.get("tasks", [])
    if isinstance(tasks_raw, dict):
        tasks = [TaskRef(str(k), str(v)) for k, v in tasks_raw.items()]
    else:
        tasks = [TaskRef.parse(str(t)) for t in _as_list(tasks_raw)]
    spec = GridSpec(
        methods=[str(m) for m in _as_list(data.get("methods", []))],
        seeds=parse_seeds(data["seeds"]) if "seeds" in data else [],
        tasks=tasks,
        budget_seconds=parse_duration(data.get("budget")),
        n_trials=int(data["trials"]) if data.get("trials") is not None else None,
        clock=str(data.get("clock", "training")),
        failure_policy=str(data.get("failure_policy", "penalty")),
        failure_value=float(data["failure_value"]) if "failure_value" in data else None,
        default_first=bool(data.get("default_first", True)),
        llm=data.get("llm"),
        replay=data.get("replay"),
        method_options={k: dict(v) for k, v in data.get("method_options", {}).items()},
        limits={k: dict(v) for k, v in data.get("limits", {}).items()},
        flush_every=int(data.get("flush_every", 50)),
    )
    return spec


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


# -- one cell ------------------------------------------------------------------------------------
@dataclass
class CellResult:
    name: str
    status: str  # ran | skipped | error
    n_trials: int = 0
    best_value: float | None = None
    seconds: float = 0.0
    message: str | None = None


class _FlushingRunner(StudyRunner):
    """The study loop, writing the buffered study back every ``flush_every`` trials."""

    buffer: BufferedStudy | None = None
    flush_every: int = 50

    def _tell(self, trial, result, slot):  # type: ignore[no-untyped-def]
        super()._tell(trial, result, slot)
        if self.buffer is not None and (trial.number + 1) % self.flush_every == 0:
            self.buffer.flush()


def cell_state(storage: Any, job: CellJob) -> str:
    """``missing``, ``partial`` or ``done`` for the stored study of ``job``.

    A finished study that was run with different settings (budget, options) is an error: the
    grid would otherwise report it as if it answered the new question.
    """
    sid = study_id_or_none(storage, job.name)
    if sid is None:
        return "missing"
    attrs = storage.get_study_system_attrs(sid)
    stored = attrs.get(CELL_KEY)
    if stored is not None:
        old = json.loads(stored)
        new = json.loads(json.dumps(job.identity()))
        if old != new:
            diff = {k: (old.get(k), new.get(k)) for k in new if old.get(k) != new.get(k)}
            raise ValueError(
                f"cell {job.name} in this storage was run with other settings {diff} "
                "(stored, asked); use another --storage (or --out) for the new grid, or the same "
                "settings to resume"
            )
    return "done" if DONE_KEY in attrs else "partial"


def run_cell(job: CellJob) -> CellResult:
    """Run (or finish) one cell; a finished cell is skipped. Runs in a worker process."""
    from centaur_hpo.methods import make_sampler
    from centaur_hpo.methods.base import optuna_quiet

    optuna_quiet()
    t0 = time.monotonic()
    storage = open_bench_storage(job.storage)
    state = cell_state(storage, job)
    if state == "done":
        return CellResult(job.name, "skipped")
    run_dir = Path(job.out_dir) / "cells" / safe_name(job.name)
    kind = task_kind(job.spec)
    simulated = kind != "script"
    if simulated and state == "partial":
        # Deterministic and cheap: start again so the result equals an uninterrupted run.
        storage.delete_study(storage.get_study_id_from_name(job.name))
    built = build_task(
        job.spec,
        job.seed,
        alias=job.task,
        run_dir=run_dir,
        failure_value=job.failure_value,
    )
    sampler = make_sampler(
        job.method,
        built.space,
        job.seed,
        failure_policy=job.failure_policy,
        llm=job.llm,
        **job.method_options,
    )
    buffer: BufferedStudy | None = None
    if simulated:
        buffer = BufferedStudy(storage, job.name, built.space.direction)
        study = optuna.load_study(study_name=job.name, storage=buffer.memory, sampler=sampler)
    else:
        study = optuna.create_study(
            storage=storage,
            study_name=job.name,
            sampler=sampler,
            direction=built.space.direction,
            load_if_exists=True,
        )
    identity = json.dumps(job.identity())
    study._storage.set_study_system_attr(study._study_id, CELL_KEY, identity)
    runner = _FlushingRunner(
        study=study,
        evaluator=built.evaluator,
        budget=Budget(job.budget_seconds, job.clock, job.n_trials),  # type: ignore[arg-type]
        failure_policy=job.failure_policy,  # type: ignore[arg-type]
        default_first=job.default_first,
        info={
            "method": job.method,
            "seed": job.seed,
            "task": job.task,
            "task_spec": job.spec,
            "task_info": built.evaluator.describe(),
            "bench_cell": job.name,
            "command": " ".join(sys.argv) if sys.argv else None,
        },
    )
    runner.buffer = buffer
    runner.flush_every = max(1, job.flush_every)
    stopped = None
    try:
        summary = runner.run()
    except StudyStopped as e:
        stopped = str(e)
        summary = runner.summary()
    done = {"stopped": stopped, "n_trials": summary["n_trials"], "host_seconds": None}
    done["host_seconds"] = round(time.monotonic() - t0, 3)
    study._storage.set_study_system_attr(study._study_id, DONE_KEY, json.dumps(done))
    if buffer is not None:
        buffer.flush()  # trials first, then the attributes (DONE_KEY last of all)
    return CellResult(
        job.name,
        "ran",
        n_trials=summary["n_trials"],
        best_value=summary["best_value"],
        seconds=time.monotonic() - t0,
        message=stopped,
    )


def run_cell_safe(job: CellJob) -> CellResult:
    """``run_cell`` that turns an error into a result, so one bad cell never sinks the grid."""
    try:
        return run_cell(job)
    except Exception as e:  # noqa: BLE001 - reported per cell, the grid goes on
        return CellResult(job.name, "error", message=f"{type(e).__name__}: {e}")


def write_grid_file(out_dir: Path, spec: GridSpec, storage: str, command: str) -> Path:
    """Record what the grid is (for `centaur report DIR` and for people)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / GRID_FILE
    data = {"storage": storage, "command": command, "grid": spec.to_json()}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
