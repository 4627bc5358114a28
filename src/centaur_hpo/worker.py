"""``centaur worker``: one of any number of processes, on any machines, working on one study.

    centaur worker train.py --storage postgresql+psycopg://HOST/DB --study NAME --method cmaes \\
        --trials 500 --slots auto          # the first worker creates the study from these flags
    centaur worker --storage postgresql+psycopg://HOST/DB --study NAME --slots auto
                                           # later workers join it with the recorded flags

Every worker runs the same study loop as ``centaur tune`` (:class:`~centaur_hpo.study.StudyRunner`)
against the shared storage. What makes many of them safe together lives there and in
:mod:`centaur_hpo.storage`: proposals run under the study lock (no trial, including a re-queued
one, goes to two workers; the method's saved state is updated by one worker at a time; the trial
budget is never overrun); every running trial has an owner and a heartbeat; a trial whose worker
died is failed and re-queued with the same parameters by exactly one survivor (at once on the same
host, after ``--grace`` seconds without a heartbeat elsewhere); a database restart is ridden out
with backoff for up to ``--db-patience`` seconds.

The flags that define the study (target, method, seed, budget, space, policy, LLM, options) are
recorded by the worker that creates it, so a SLURM array can run one short command per node.
Samplers with random streams of their own (random, TPE, GP, SMAC) get a distinct seed per worker
(``seed + k`` for the k-th worker to join), so workers never draw the same random proposals;
CMA-ES, Centaur and the LLM methods keep one shared state in the storage instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler

from centaur_hpo.records import get_study_attr, set_study_attr
from centaur_hpo.storage import open_storage, retry_db, study_lock
from centaur_hpo.study import (
    FAILURE_POLICIES,
    Budget,
    StudyRunner,
    format_duration,
    parse_duration,
    worker_identity,
)

SPEC_KEY = "centaur:worker_spec"  # study system attr: the flags that define the study (JSON)
JOINED_KEY = "centaur:workers_joined"  # study system attr: how many workers have joined


@dataclass
class StudySpec:
    """What a study runs: everything a joining worker needs to build the same loop."""

    target: str  # a training script, a built-in task, or a simulated/``fn:`` task
    method: str = "tpe"
    seed: int = 0
    n_trials: int | None = None
    budget: float | None = None
    budget_clock: str = "training"
    trial_budget: float | None = None
    timeout: float | None = None
    memory_cap: str | None = None
    device: str = "cpu"
    space: str | None = None
    tune: list[str] | None = None
    metric: str | None = None
    direction: str | None = None
    failure_policy: str = "penalty"
    llm: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    default_first: bool = True

    def check(self) -> None:
        if self.n_trials is None and self.budget is None:
            raise ValueError("give a budget (--budget 10m) or a number of trials (--trials 200)")
        if self.failure_policy not in FAILURE_POLICIES:
            raise ValueError(f"--failure-policy must be one of {', '.join(FAILURE_POLICIES)}")

    def differences(self, other: StudySpec) -> list[str]:
        """Flags that would change the study (budgets may be raised by a later worker)."""
        keys = (
            "target",
            "method",
            "seed",
            "space",
            "tune",
            "metric",
            "direction",
            "llm",
            "options",
            "failure_policy",
        )
        a, b = asdict(self), asdict(other)
        return [
            f"--{k.replace('_', '-')} {a[k]!r} (the study has {b[k]!r})"
            for k in keys
            if a[k] != b[k]
        ]


def _is_script_target(target: str) -> bool:
    from centaur_hpo.tasks.registry import SCRIPT_TASKS

    return target in SCRIPT_TASKS or (target.endswith(".py") and not target.startswith("fn:"))


def build_evaluator(spec: StudySpec, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The evaluator for the study's target, and what to record about it."""
    if _is_script_target(spec.target):
        from centaur_hpo.api import resolve_target
        from centaur_hpo.evaluate import ScriptEvaluator
        from centaur_hpo.runner import parse_bytes
        from centaur_hpo.tasks.registry import SCRIPT_TASKS

        builtin = spec.target in SCRIPT_TASKS
        script, space, _ = resolve_target(
            None if builtin else spec.target,
            spec.target if builtin else None,
            spec.space,
            spec.tune,
        )
        space = _override(space, spec)
        tb = spec.trial_budget if spec.trial_budget is not None else space.trial_budget
        cap = parse_bytes(spec.memory_cap if spec.memory_cap is not None else space.memory_cap)
        ev = ScriptEvaluator(
            script=script,
            space=space,
            run_dir=run_dir,
            trial_budget=tb,
            timeout=spec.timeout,
            memory_cap=cap,
            device=spec.device,
        )
        return ev, {"script": str(Path(script).resolve()), "task": spec.target if builtin else None}
    from centaur_hpo.bench.tasks import build_task

    if spec.space or spec.tune:
        raise ValueError("--space and --tune apply to training scripts, not to simulated tasks")
    built = build_task(spec.target, spec.seed, run_dir=run_dir, device=spec.device)
    built.evaluator.space = _override(built.evaluator.space, spec)
    return built.evaluator, {"task": spec.target}


def _override(space: Any, spec: StudySpec) -> Any:
    if spec.metric or spec.direction:
        return replace(
            space, metric=spec.metric or space.metric, direction=spec.direction or space.direction
        )
    return space


def parse_slots(text: str | None, per_gpu: int = 1) -> list[str] | None:
    """``--slots``: ``auto`` (every visible GPU) or GPU ids ``0,1,3``; each id ``per_gpu`` times."""
    if not text:
        return None
    if text == "auto":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            gpus = [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
        elif shutil.which("nvidia-smi"):
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            gpus = [
                str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")
            ]
        else:
            gpus = []
        if not gpus:
            raise ValueError("--slots auto found no GPU (no CUDA_VISIBLE_DEVICES, no nvidia-smi)")
    else:
        gpus = [g.strip() for g in text.split(",") if g.strip()]
    if per_gpu < 1:
        raise ValueError("--per-gpu must be at least 1")
    return [g for g in gpus for _ in range(per_gpu)]


def _load_or_create(
    storage: Any, name: str, spec: StudySpec | None, direction: str
) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        if spec is None:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise ValueError(
                f"no study {name!r} in the storage (it holds {names}); the first worker creates "
                "it: give the script or --task and the --method/--trials/--budget flags"
            ) from None
    try:
        return optuna.create_study(study_name=name, storage=storage, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:  # another worker created it just now
        return optuna.load_study(study_name=name, storage=storage)


def join_study(
    storage: Any, name: str, spec: StudySpec | None, direction: str = "minimize"
) -> tuple[StudySpec, int]:
    """Create or join study ``name``: (the study's spec, this worker's ordinal, 0 for the first).

    A worker with flags records them when the study has none yet and must agree with them
    otherwise; a worker without flags takes the recorded ones.
    """
    study = _load_or_create(storage, name, spec, direction)
    with study_lock(storage, study._study_id):
        text = get_study_attr(study, SPEC_KEY)
        if text:
            recorded = StudySpec(**json.loads(text))
            if spec is not None:
                diff = spec.differences(recorded)
                if diff:
                    raise ValueError(
                        f"study {name!r} was created with other flags: {'; '.join(diff)}. Join "
                        "it without them (centaur worker --storage URL --study NAME) or use a "
                        "new --study name"
                    )
                spec = replace(recorded, n_trials=spec.n_trials, budget=spec.budget)
            else:
                spec = recorded
        elif spec is None:
            raise ValueError(
                f"study {name!r} was not created by `centaur worker`, so its flags are not "
                "recorded; give the same script or --task and --method/--seed flags it was run with"
            )
        else:
            set_study_attr(study, SPEC_KEY, json.dumps(asdict(spec)))
        ordinal = int(get_study_attr(study, JOINED_KEY) or 0)
        set_study_attr(study, JOINED_KEY, ordinal + 1)
    return spec, ordinal


def run_worker(
    storage_url: str,
    study_name: str,
    spec: StudySpec | None = None,
    *,
    run_dir: str | Path = "runs",
    slots: list[str] | None = None,
    n_jobs: int = 1,
    heartbeat: float = 5.0,
    grace: float = 60.0,
    db_patience: float = 600.0,
    progress: Any = None,
) -> dict[str, Any]:
    """Work on ``study_name`` until its budget is used or it is stopped; return the summary."""
    from centaur_hpo.methods import make_sampler
    from centaur_hpo.methods.base import ConfigSampler, optuna_quiet

    optuna_quiet()
    if spec is not None:
        spec.check()
    say = progress or _printer()
    storage = retry_db(
        lambda: open_storage(storage_url), patience=db_patience, say=say, what="opening the storage"
    )
    run_path = Path(run_dir) / study_name
    run_path.mkdir(parents=True, exist_ok=True)
    direction = build_evaluator(spec, run_path)[0].space.direction if spec else "minimize"
    spec, ordinal = retry_db(
        lambda: join_study(storage, study_name, spec, direction),
        patience=db_patience,
        say=say,
        what="joining the study",
    )
    evaluator, target_info = build_evaluator(spec, run_path)
    space = evaluator.space

    def sampler_for(seed: int) -> Any:
        return make_sampler(
            spec.method,
            space,
            seed,
            failure_policy=spec.failure_policy,
            llm=spec.llm,
            **dict(spec.options),
        )

    sampler = sampler_for(spec.seed)
    if not isinstance(sampler, ConfigSampler) and ordinal:
        sampler = sampler_for(spec.seed + ordinal)  # its own random stream; see the module doc
    fallback = getattr(sampler, "fallback", None)
    if ordinal and isinstance(fallback, BaseSampler):
        fallback.reseed_rng()  # an LLM method's fallback is not shared state: draw apart
    study = retry_db(
        lambda: optuna.load_study(study_name=study_name, storage=storage, sampler=sampler),
        patience=db_patience,
        say=say,
        what="loading the study",
    )
    if study.direction.name.lower() != space.direction:
        raise ValueError(
            f"study {study_name!r} {study.direction.name.lower()}s but the task's metric is to "
            f"be {space.direction}d; use a new --study name"
        )
    runner = StudyRunner(
        study=study,
        evaluator=evaluator,
        budget=Budget(spec.budget, spec.budget_clock, spec.n_trials),  # type: ignore[arg-type]
        failure_policy=spec.failure_policy,  # type: ignore[arg-type]
        default_first=spec.default_first,
        n_jobs=n_jobs,
        slots=slots,
        heartbeat_interval=heartbeat,
        grace_period=grace,
        progress=say,
        db_patience=db_patience,
        info={
            "method": spec.method,
            "seed": spec.seed,
            **target_info,
            "command": " ".join(sys.argv) if sys.argv else None,
        },
    )
    summary = runner.run()  # StudyStopped (a method that cannot propose, ...) reaches the CLI
    summary["worker_ordinal"] = ordinal
    return summary


def _printer() -> Any:
    me = worker_identity()
    tag = f"[{me['host']}:{me['pid']}]"
    return lambda s: print(f"{tag} {s}", file=sys.stderr, flush=True)


# -- the command line ---------------------------------------------------------------------------
def register_cli(sub: Any) -> None:
    """Add ``centaur worker`` to the main parser (called by :mod:`centaur_hpo.cli`)."""
    from centaur_hpo.methods import METHODS

    p = sub.add_parser(
        "worker",
        help="work on a shared study with any number of other workers (PostgreSQL storage)",
        description="Run trials of one study in a shared storage together with other workers "
        "on this or other machines. The first worker creates the study from its flags (the "
        "same as `centaur tune`); later workers may give only --storage and --study.",
    )
    p.add_argument("target", nargs="?", help="training script (or give --task)")
    p.add_argument("--task", help="built-in or simulated task: cpu-gpt, surrogate:..., fn:MOD:FN")
    p.add_argument(
        "--storage",
        required=True,
        help="shared storage URL, e.g. postgresql+psycopg://user@host/db",
    )
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--method", choices=METHODS, help="optimizer (default: tpe)")
    p.add_argument("--seed", type=int, help="seed of the optimizer (default: 0)")
    p.add_argument(
        "--trials",
        "--n-trials",
        dest="trials",
        type=int,
        help="stop the study after this many trials (all workers together)",
    )
    p.add_argument("--budget", help="compute budget of the whole study, e.g. 24h")
    p.add_argument("--budget-clock", choices=("training", "wall"), default="training")
    p.add_argument("--trial-budget", help="training budget per trial, e.g. 5m")
    p.add_argument("--timeout", help="hard wall-clock limit per trial")
    p.add_argument("--memory-cap", help="memory cap per trial, e.g. 3GiB")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where trials run (cuda with --slots)")
    p.add_argument("--space", help="space file (TOML) or built-in space name")
    p.add_argument("--tune", help="comma-separated subset of knobs to tune")
    p.add_argument("--metric", help="metric the script prints")
    p.add_argument("--direction", choices=("minimize", "maximize"))
    p.add_argument("--failure-policy", choices=tuple(FAILURE_POLICIES))
    p.add_argument("--llm", help="LLM for LLM methods (see centaur tune --help)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option (repeatable)",
    )
    p.add_argument("--no-default-first", action="store_true")
    p.add_argument(
        "--slots", help="GPU slots of this worker: 'auto' (every visible GPU) or ids 0,1,2"
    )
    p.add_argument("--per-gpu", type=int, default=1, help="trials per GPU slot (default 1)")
    p.add_argument("--jobs", type=int, default=1, help="CPU trials in parallel in this worker")
    p.add_argument("--heartbeat", type=float, default=5.0, help="seconds between heartbeats")
    p.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds without a heartbeat before another host's trial counts as dead",
    )
    p.add_argument(
        "--db-patience",
        type=float,
        default=600.0,
        help="seconds to keep retrying an unreachable database before giving up",
    )
    p.add_argument("--run-dir", default="runs", help="folder for trial logs (default: runs)")
    p.set_defaults(handler=cmd_worker)


def spec_from_args(args: argparse.Namespace) -> StudySpec | None:
    """The study's flags, or None when the worker only joins (no target given)."""
    from centaur_hpo.cli import _parse_options

    if args.target and args.task:
        raise ValueError("give either a training script or --task NAME (not both)")
    target = args.target or args.task
    if target is None:
        defining = [
            k
            for k in (
                "method",
                "seed",
                "space",
                "tune",
                "metric",
                "direction",
                "llm",
                "trials",
                "budget",
                "failure_policy",
            )
            if getattr(args, k) is not None
        ] + (["option"] if args.option else [])
        if defining:
            raise ValueError(
                f"--{defining[0].replace('_', '-')} defines the study; give the script or --task "
                "too, or drop it to join the study with its recorded flags"
            )
        return None
    if args.target and not Path(args.target).is_file():
        raise ValueError(f"no training script {args.target}")
    return StudySpec(
        target=str(Path(target).resolve()) if args.target else _absolute_fn(target),
        method=args.method or "tpe",
        seed=0 if args.seed is None else args.seed,
        n_trials=args.trials,
        budget=parse_duration(args.budget),
        budget_clock=args.budget_clock,
        trial_budget=parse_duration(args.trial_budget),
        timeout=parse_duration(args.timeout),
        memory_cap=args.memory_cap,
        device=args.device or ("cuda" if args.slots else "cpu"),
        space=args.space,
        tune=args.tune.split(",") if args.tune else None,
        metric=args.metric,
        direction=args.direction,
        failure_policy=args.failure_policy or "penalty",
        llm=args.llm,
        options=_parse_options(args.option),
        default_first=not args.no_default_first,
    )


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _absolute_fn(target: str) -> str:
    """``fn:rel/path.py:F`` -> ``fn:/abs/path.py:F`` so workers started elsewhere find the file."""
    if target.startswith("fn:"):
        where, _, attr = target[3:].rpartition(":")
        if where.endswith(".py"):
            return f"fn:{Path(where).resolve()}:{attr}"
    return target


def cmd_worker(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    # SLURM and Kubernetes preempt with SIGTERM: unwind like Ctrl-C so the running trial is
    # failed and re-queued at once instead of waiting for the grace period.
    signal.signal(signal.SIGTERM, _terminate)
    t0 = time.monotonic()
    summary = run_worker(
        args.storage,
        args.study,
        spec,
        run_dir=args.run_dir,
        slots=parse_slots(args.slots, args.per_gpu),
        n_jobs=args.jobs,
        heartbeat=args.heartbeat,
        grace=args.grace,
        db_patience=args.db_patience,
    )
    print(
        f"worker done: study {summary['study']}  trials {summary['n_trials']}  best "
        f"{summary['best_value']} (#{summary['best_number']})  "
        f"{format_duration(time.monotonic() - t0)} here"
        + (f"  stopped: {summary['stopped']}" if summary.get("stopped") else "")
    )
    return 0
