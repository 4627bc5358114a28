"""The ``centaur`` command line.

centaur tune train.py --method tpe --budget 24h --trial-budget 5m
centaur tune --task cpu-gpt --budget 4m
centaur space train.py
centaur status --study NAME        centaur best --study NAME
centaur studies --storage URL       centaur export --study NAME -o trials.csv
centaur stop --study NAME
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

import optuna

from centaur_hpo.methods import DESCRIPTIONS, METHODS
from centaur_hpo.records import get_study_attr, set_study_attr
from centaur_hpo.space import INFERENCE_RULES, SpaceError
from centaur_hpo.study import FAILURE_POLICIES, STOP_KEY, format_duration


def _parse_options(items: list[str]) -> dict[str, Any]:
    """``--option ratio=0.3`` pairs: ints, floats, booleans (true/false/yes/no) and JSON are
    parsed; anything else stays text (``-o refiner=tpe``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValueError(f"--option takes KEY=VALUE, got {item!r}")
        words = {"true": True, "yes": True, "false": False, "no": False, "none": None}
        if v.strip().lower() in words:
            out[k.strip()] = words[v.strip().lower()]
            continue
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _add_study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", help="study name (default: the only study in the storage)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (default: sqlite:///runs/STUDY/study.db, or the only runs/*/study.db)",
    )
    p.add_argument(
        "--run-dir", default="runs", help="folder holding one sub-folder per study (default: runs)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="centaur",
        description="Tune a training script's hyperparameters under a compute budget "
        "(classical, LLM and Centaur optimizers).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "tune",
        help="tune a script or built-in task (rerun the same command to resume)",
        description="Tune the module-level ALL_CAPS knobs of a training script. Each trial runs a "
        "copy of the script in its own folder; the study lives in an Optuna storage and resumes "
        "when the same command is run again.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="methods:\n"
        + "\n".join(f"  {m:<15} {DESCRIPTIONS[m]}" for m in METHODS)
        + "\n\nfailure policies:\n"
        + "\n".join(f"  {k:<11} {v}" for k, v in FAILURE_POLICIES.items()),
    )
    t.add_argument(
        "script", nargs="?", help="training script that prints its metric (e.g. train.py)"
    )
    t.add_argument(
        "--task",
        help="a built-in task instead of a script: cpu-gpt (real training), or a simulated one "
        "(autoresearch-sim, surrogate:cpu-gpt, bbob:f1:d5:i1, ...; see centaur tasks)",
    )
    t.add_argument("--method", default="tpe", choices=METHODS, help="optimizer (default: tpe)")
    t.add_argument("--seed", type=int, default=0, help="seed of the optimizer (default: 0)")
    t.add_argument("--trials", type=int, help="stop after this many trials")
    t.add_argument("--budget", help="compute budget, e.g. 24h, 10m, 90s (see --budget-clock)")
    t.add_argument(
        "--budget-clock",
        default="training",
        choices=("training", "wall"),
        help="training: time the trial processes ran, failures charged like successes, optimizer "
        "and LLM time excluded (as in the paper); wall: elapsed time including optimizer and LLM",
    )
    t.add_argument(
        "--trial-budget",
        help="training budget per trial, passed to the script "
        "(CENTAUR_TRIAL_BUDGET and its TIME_BUDGET constant), e.g. 5m or 30",
    )
    t.add_argument(
        "--timeout", help="hard wall-clock limit per trial (default: 2 x trial budget + 2m)"
    )
    t.add_argument(
        "--memory-cap",
        help="memory cap per trial, e.g. 3GiB: an address-space limit on "
        "CPU, PyTorch's CUDA memory fraction with --device cuda",
    )
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where trials run")
    t.add_argument("--gpus", help="comma-separated GPU ids, one trial slot each (e.g. 0,1,2,3)")
    t.add_argument("--jobs", type=int, default=1, help="trials run in parallel (default 1)")
    t.add_argument("--space", help="space file (TOML) or built-in space name (autoresearch)")
    t.add_argument("--tune", help="comma-separated subset of knobs to tune (others stay fixed)")
    t.add_argument(
        "--metric", help="metric the script prints (default: the space file's, else val_bpb)"
    )
    t.add_argument("--direction", choices=("minimize", "maximize"), help="default: minimize")
    t.add_argument(
        "--failure-policy",
        default="penalty",
        choices=tuple(FAILURE_POLICIES),
        help="how a failed trial is told to the optimizer (default: penalty)",
    )
    t.add_argument(
        "--llm",
        metavar="SPEC",
        help="LLM for LLM methods: local (the embedded SmolLM2-135M, default), "
        "openai:MODEL@URL (any OpenAI-compatible server: vLLM, Ollama, llama.cpp), "
        "anthropic:MODEL. Environment: CENTAUR_LLM (a spec), OPENAI_BASE_URL, OPENAI_API_KEY, "
        "ANTHROPIC_API_KEY; keys are read from the environment only, never stored or printed",
    )
    t.add_argument(
        "--llm-fallback",
        action="store_true",
        help="when the LLM fails, propose classically instead of stopping (recorded as the "
        "trial's source fallback:REASON); off by default",
    )
    t.add_argument(
        "--replay",
        metavar="CASSETTE",
        help="answer the LLM calls from a recording instead of an LLM: a .jsonl cassette "
        "(centaur export --llm-calls) or STORAGE_URL#STUDY; re-runs that study exactly",
    )
    t.add_argument(
        "--budget-includes-llm",
        action="store_true",
        help="charge the time spent proposing (LLM calls) to the budget; by default it is "
        "excluded, as in the paper, and reported separately",
    )
    t.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, e.g. --option ratio=0.3 (repeatable)",
    )
    t.add_argument(
        "--no-default-first",
        action="store_true",
        help="do not run the script's default configuration as trial 0",
    )
    _add_study_args(t)

    s = sub.add_parser("space", help="print the search space of a script")
    s.add_argument("script")
    s.add_argument("--space", help="space file (TOML) or built-in space name")
    s.add_argument("--tune", help="comma-separated subset of knobs to tune")
    s.add_argument("--write", help="write the space as a TOML space file to this path")

    for name, help_text in (
        ("status", "show a study's progress without running anything"),
        ("best", "print the best configuration of a study (JSON)"),
        ("export", "write a study's trial table as CSV"),
        ("stop", "ask a study's workers to finish their running trials and start no new ones"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_study_args(p)
        if name == "export":
            p.add_argument(
                "-o", "--output", default="trials.csv", help="CSV path (default trials.csv)"
            )
            p.add_argument(
                "--llm-calls",
                metavar="PATH",
                help="also write the study's LLM calls as a JSONL cassette (for --replay)",
            )
        if name == "best":
            p.add_argument("--diff", action="store_true", help="also print the script diff")
        if name == "stop":
            p.add_argument(
                "--undo",
                action="store_true",
                help="withdraw the stop request, so workers (or tune) may continue the study",
            )

    ls = sub.add_parser("studies", help="list the studies in a storage")
    ls.add_argument("--storage", help="Optuna storage URL (default: every runs/*/study.db)")
    ls.add_argument("--run-dir", default="runs")

    sub.add_parser("methods", help="list the optimizers")
    sub.add_parser("tasks", help="list the built-in and simulated tasks (--task NAME)")
    _register_extra(sub)
    return parser


def _register_extra(sub: Any) -> None:
    """Commands of other modules (bench, report, surrogate, worker) that exist in this install."""
    import importlib

    for module in ("centaur_hpo.bench.cli", "centaur_hpo.worker", "centaur_hpo.tasks.cli"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        register = getattr(mod, "register_cli", None)
        if register:
            register(sub)


# -- commands ----------------------------------------------------------------------------------
def cmd_tune(args: argparse.Namespace) -> int:
    from centaur_hpo.api import tune

    result = tune(
        args.script,
        task=args.task,
        method=args.method,
        seed=args.seed,
        n_trials=args.trials,
        budget=args.budget,
        budget_clock=args.budget_clock,
        trial_budget=args.trial_budget,
        timeout=args.timeout,
        memory_cap=args.memory_cap,
        device=args.device,
        storage=args.storage,
        study=args.study,
        space=args.space,
        tune_params=args.tune.split(",") if args.tune else None,
        metric=args.metric,
        direction=args.direction,
        failure_policy=args.failure_policy,
        run_dir=args.run_dir,
        n_jobs=args.jobs,
        gpus=args.gpus.split(",") if args.gpus else None,
        llm=args.llm,
        method_options=_parse_options(args.option),
        llm_fallback=args.llm_fallback,
        replay=args.replay,
        budget_includes_llm=args.budget_includes_llm,
        default_first=not args.no_default_first,
    )
    print()
    print(f"study      {result.study_name}   storage {result.storage}")
    print(f"trials     {result.n_trials}   budget used {format_duration(result.used_seconds)}")
    if result.llm_usage:
        print(f"llm        {_llm_line(result.llm_usage)}")
    if result.summary.get("stopped"):
        print(f"stopped    {result.summary['stopped']}")
    if result.best_params is None:
        print("no trial succeeded yet; see the logs under", result.run_dir / "trials")
        return 1
    print(f"default    {result.default_value}")
    print(f"best       {result.best_value}  (trial #{result.summary.get('best_number')})")
    if result.improvement is not None:
        print(f"improvement over the default: {result.improvement:+.6g}")
    print("best configuration:")
    print(json.dumps(result.best_params, indent=2))
    if result.diff:
        print("\nthe script with the best configuration applied:")
        print(result.diff)
    if (result.run_dir / "trials").is_dir():  # simulated tasks leave no trial folders
        print(f"logs       {result.run_dir / 'trials'}")
    print(f"table      {result.csv_path}")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from centaur_hpo.spaces import find_space_file, space_for_script

    path = find_space_file(args.script, args.space)
    space = space_for_script(args.script, args.space, args.tune.split(",") if args.tune else None)
    print(f"search space of {args.script}  (space file: {path or 'none, bounds inferred'})\n")
    print(space.table())
    if path is None:
        print("\n" + INFERENCE_RULES)
    if args.write:
        import tomllib  # noqa: F401 - only to prove the written file reads back

        Path(args.write).write_text(_space_toml(space))
        print(f"\nwrote {args.write}")
    return 0


def _space_toml(space: Any) -> str:
    lines = [f'metric = "{space.metric}"', f'direction = "{space.direction}"', ""]
    for p in space:
        lines.append(f"[params.{p.name}]")
        for k, v in p.to_toml_dict().items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


def _open_study(args: argparse.Namespace) -> optuna.Study:
    from centaur_hpo.api import open_storage

    url = args.storage
    if url is None:
        run_dir = Path(args.run_dir)
        if args.study:
            db = run_dir / args.study / "study.db"
        else:
            dbs = sorted(run_dir.glob("*/study.db"))
            if len(dbs) != 1:
                names = [d.parent.name for d in dbs]
                raise ValueError(
                    f"name the study with --study (found {names or 'none'} under {run_dir}/)"
                )
            db = dbs[0]
        if not db.is_file():
            raise ValueError(f"no study database at {db}; pass --storage URL or check --run-dir")
        url = f"sqlite:///{db.resolve()}"
    storage = open_storage(url)
    name = args.study
    if name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if len(names) != 1:
            raise ValueError(f"name the study with --study; the storage holds {names}")
        name = names[0]
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise ValueError(f"no study {name!r} in the storage; it holds {names}") from None


def cmd_status(args: argparse.Namespace) -> int:
    from centaur_hpo.records import best_trial, charged_seconds, outcome_counts, study_info

    study = _open_study(args)
    info = study_info(study)
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    budget = info.get("budget", {})
    print(f"study    {study.study_name}   method {info.get('method')}   seed {info.get('seed')}")
    print(f"trials   {len(trials)}  outcomes {outcome_counts(trials)}")
    running = [t.number for t in trials if t.state.name == "RUNNING"]
    if running:
        print(f"running  {running}")
    used = charged_seconds(study)
    total = budget.get("seconds")
    left = f" of {format_duration(total)} ({format_duration(total - used)} left)" if total else ""
    print(f"budget   {format_duration(used)} {budget.get('clock', 'training')} time used{left}")
    from centaur_hpo.llm.records import llm_usage

    usage = llm_usage(study)
    if usage["requests"]:
        print(f"llm      {_llm_line(usage)}")
    if best:
        print(f"best     {best.user_attrs['value']} (trial #{best.number})")
    if get_study_attr(study, STOP_KEY):
        print("stop     requested")
    return 0


def _llm_line(usage: dict[str, Any]) -> str:
    """LLM cost on one line, apart from the training time the budget counts."""
    return (
        f"{usage['calls']} calls ({usage['failed_calls']} failed, {usage['requests']} requests), "
        f"{usage['tokens_in']} tokens in ({usage['cached_tokens']} cached), "
        f"{usage['tokens_out']} out, {format_duration(usage['latency_s'])} of LLM time"
    )


def cmd_best(args: argparse.Namespace) -> int:
    from centaur_hpo.records import best_trial, study_info

    study = _open_study(args)
    best = best_trial(study)
    if best is None:
        print("no successful trial yet", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {"trial": best.number, "value": best.user_attrs["value"], "params": best.params},
            indent=2,
        )
    )
    if args.diff:
        from centaur_hpo.script import config_diff

        info = study_info(study)
        script = info.get("script")
        if script and Path(script).is_file():
            print(config_diff(script, best.params))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from centaur_hpo.records import export_csv

    study = _open_study(args)
    path = export_csv(study, args.output)
    print(f"wrote {path}")
    if args.llm_calls:
        from centaur_hpo.llm.records import export_cassette, llm_calls

        cassette = export_cassette(study, args.llm_calls)
        print(f"wrote {cassette} ({len(llm_calls(study))} LLM requests)")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    study = _open_study(args)
    if args.undo:
        set_study_attr(study, STOP_KEY, False)
        print(f"stop withdrawn for {study.study_name}: start workers (or tune) to continue it")
        return 0
    set_study_attr(study, STOP_KEY, True)
    print(f"stop requested for {study.study_name}: running trials finish, no new ones start")
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from centaur_hpo.api import open_storage

    urls = (
        [args.storage]
        if args.storage
        else [f"sqlite:///{p.resolve()}" for p in sorted(Path(args.run_dir).glob("*/study.db"))]
    )
    for url in urls:
        for s in optuna.get_all_study_summaries(open_storage(url)):
            best = s.best_trial.values[0] if s.best_trial and s.best_trial.values else None
            print(f"{s.study_name:<40} trials={s.n_trials:<5} best_told={best}  {url}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    for m in METHODS:
        print(f"{m:<15} {DESCRIPTIONS[m]}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from centaur_hpo.bench.tasks import list_tasks

    for name in list_tasks():
        print(name)
    return 0


COMMANDS = {
    "tasks": cmd_tasks,
    "tune": cmd_tune,
    "space": cmd_space,
    "status": cmd_status,
    "best": cmd_best,
    "export": cmd_export,
    "stop": cmd_stop,
    "studies": cmd_studies,
    "methods": cmd_methods,
}


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    # A scheduler's SIGTERM unwinds like Ctrl-C: the running trial's process group is killed
    # and the trial recorded as interrupted, instead of leaving an orphaned training process.
    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return int(handler(args) or 0)
    except (SpaceError, ValueError, FileNotFoundError) as e:
        print(f"centaur {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"centaur {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
