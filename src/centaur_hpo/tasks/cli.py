"""``centaur surrogate``: fit a surrogate task from a trial log, and show what a model file holds.

centaur surrogate fit runs/tpe/study.db -o tpe.joblib          (a centaur study)
centaur surrogate fit trials.csv --space autoresearch -o ar.joblib
centaur surrogate fit paper_trials.json --method tpe -o paper-tpe.joblib
centaur surrogate show ar.joblib
centaur tune --task surrogate:ar.joblib --budget 24h            (replay a study in seconds)
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Any


def register_cli(sub: Any) -> None:
    """Add ``centaur surrogate`` to the top-level parser's subcommands."""
    p = sub.add_parser(
        "surrogate",
        help="fit a surrogate task from a trial log (replays studies in seconds)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ss = p.add_subparsers(dest="surrogate_command", required=True)
    f = ss.add_parser(
        "fit",
        help="learn metric, failure and time models from a log; print their CV accuracy",
        description="Learn three models from a trial log: the metric of successful trials, the "
        "probability (and class) of failure, and the wall time by outcome. Prints k-fold "
        "cross-validated accuracy and writes MODEL.joblib plus MODEL.json (space, scores, noise, "
        "versions). Logs: a centaur study (storage URL or .db file, with --study), the CSV of "
        "`centaur export`, a CSV/TSV/Parquet/JSON/JSONL table with parameter columns, a value "
        "column, success or outcome and wall time, or the paper's per-trial JSON "
        "(method -> seed -> records with tid, val_bpb, success, wt).",
    )
    f.add_argument(
        "log", nargs="+", help="log file(s), .db file or storage URL; several must share a space"
    )
    f.add_argument("-o", "--output", required=True, help="model file to write (MODEL.joblib)")
    f.add_argument(
        "--study", help="study in the storage: a name, several as a,b, or all (one space)"
    )
    f.add_argument(
        "--space",
        help="space file (TOML), built-in space (autoresearch) or built-in task (cpu-gpt) "
        "stating the parameters and defaults; "
        "default: the study's recorded space, else inferred from the log",
    )
    f.add_argument("--value", help="column holding the metric (default: value, val_bpb, ...)")
    f.add_argument("--time", help="column holding wall seconds (default: time_wall, wt, ...)")
    f.add_argument(
        "--constant-time",
        type=float,
        help="charge every simulated trial this many seconds (a log without times)",
    )
    f.add_argument("--params", help="comma-separated parameter columns (default: all others)")
    f.add_argument("--method", help="use only this method's trials (paper JSON, method column)")
    f.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    f.add_argument("--seed", type=int, default=0, help="seed of the models and folds")
    f.add_argument("--trees", type=int, default=100, help="trees per ensemble (default 100)")
    f.add_argument(
        "--noise-sd",
        type=float,
        help="measurement noise to simulate, instead of the estimate from repeated "
        "configurations (or, without repeats, from CV residuals)",
    )
    f.set_defaults(handler=cmd_fit)
    s = ss.add_parser("show", help="print a model file's space, CV accuracy and noise")
    s.add_argument("model")
    s.add_argument("--json", action="store_true", help="print the metadata as JSON")
    s.set_defaults(handler=cmd_show)


def cmd_fit(args: argparse.Namespace) -> int:
    from centaur_hpo.tasks.surrogate import fit_log

    params = [c.strip() for c in args.params.split(",") if c.strip()] if args.params else None
    _, path, meta_path = fit_log(
        args.log,
        args.output,
        study=args.study,
        space=args.space,
        value_column=args.value,
        time_column=args.time,
        params=params,
        method=args.method,
        constant_time=args.constant_time,
        folds=args.folds,
        seed=args.seed,
        n_trees=args.trees,
        noise_sd=args.noise_sd,
        progress=print,
        command=_command(args),
    )
    print(f"wrote {path} and {meta_path}")
    print(f"use it as: --task surrogate:{path}")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The fit as one reproducible command line (recorded in the model's metadata)."""
    words = ["centaur", "surrogate", "fit", *args.log, "-o", args.output]
    flags = {
        "--study": args.study,
        "--space": args.space,
        "--value": args.value,
        "--time": args.time,
        "--constant-time": args.constant_time,
        "--params": args.params,
        "--method": args.method,
        "--folds": args.folds,
        "--seed": args.seed,
        "--trees": args.trees,
        "--noise-sd": args.noise_sd,
    }
    for flag, value in flags.items():
        if value is not None:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def cmd_show(args: argparse.Namespace) -> int:
    from centaur_hpo.tasks.surrogate import describe_scores, metadata_path, resolve

    meta_file = metadata_path(resolve(args.model))
    if not meta_file.is_file():
        raise ValueError(f"no metadata {meta_file} beside the model")
    meta = json.loads(meta_file.read_text())
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    print(describe_scores(meta))
    params = meta["space"]["params"]
    print(
        f"space ({len(params)} parameters, {meta['space']['metric']} {meta['space']['direction']}):"
    )
    for name, d in params.items():
        rng = d.get("choices") or [d.get("low"), d.get("high")]
        print(f"  {name:<20} {d['type']:<11} {rng}{' log' if d.get('log') else ''}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()))
    return 0
