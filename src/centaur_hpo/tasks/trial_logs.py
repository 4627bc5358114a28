"""Read a log of trials, from any of the places one lives, into one checked table.

A surrogate is only as good as the log it learns from, so this module is strict: a log that is
missing its value column, names parameters the space does not have, has no successful trial or
holds non-numeric values is rejected with a :class:`LogError` that says what to fix.

Accepted logs:

* this project's studies: an Optuna storage URL (or a ``.db`` file) plus a study name, or the
  CSV written by ``centaur export`` (``param:NAME``, ``value``, ``outcome``, ``time_wall`` ...);
* generic tables (CSV, TSV, Parquet, JSON list of records, JSON Lines) with one column per
  parameter, a value column, a success or outcome column and a wall-time column;
* the paper's per-trial JSON: ``{method: {seed: [{"tid", "val_bpb", "success", "wt", HP...}]}}``
  where failed trials carry ``val_bpb`` 100.0 and wall times are in seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from centaur_hpo.space import Config, Param, SearchSpace, SpaceError

VALUE_COLUMNS = ("value", "val_bpb", "objective", "loss", "score", "metric", "y")
TIME_COLUMNS = (
    "time_wall",
    "wall_time",
    "wt",
    "time",
    "seconds",
    "duration",
    "elapsed",
    "runtime",
    "time_training",
)
SUCCESS_COLUMNS = ("success", "succeeded", "ok")
OUTCOME_COLUMNS = ("outcome", "status")
#: Columns that describe a trial but are not parameters of it.
META_COLUMNS = {
    "number",
    "tid",
    "trial",
    "trial_id",
    "id",
    "seed",
    "method",
    "state",
    "error",
    "source",
    "rerun_of",
    "not_run",
    "started",
    "finished",
    "datetime_start",
    "datetime_complete",
    "timestamp",
    "told_value",
    "exit_code",
    "logs",
    "slot",
    "iteration",
    "run",
    "study",
    "time_startup",
    "time_eval",
    "time_optimizer",
    "time_charged",
    "time_training",
    "time_wall",
}
NOT_RAN = {"interrupted", "not_run", "running", "waiting", "pruned"}
FAILURE_CLASSES = ("oom", "diverged", "timeout", "crash", "no_metric")
PAPER_FAILURE_VALUE = 100.0
MIN_SUCCESSES = 8


class LogError(ValueError):
    """The log cannot be used as it is; the message says what to change."""


@dataclass
class TrialLog:
    """Trials that ran: configuration, outcome class, value (successes only) and wall time."""

    space: SearchSpace
    configs: list[Config]
    outcomes: list[str]
    values: list[float | None]
    times: list[float]
    source: str
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # the files merged into this log, if several

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def n_ok(self) -> int:
        return self.outcomes.count("ok")


# -- entry point ---------------------------------------------------------------------------------
def read_log(
    source: str | Path,
    *,
    study: str | None = None,
    space: SearchSpace | str | Path | None = None,
    value_column: str | None = None,
    time_column: str | None = None,
    params: list[str] | None = None,
    method: str | None = None,
    constant_time: float | None = None,
) -> TrialLog:
    """Read and check the log at ``source`` (a file path or a storage URL)."""
    text = str(source)
    if "://" in text or text.endswith((".db", ".sqlite", ".sqlite3")):
        records, meta = _from_storage(text, study)
        given_space = _resolve_space(space, records, meta.get("params"))
        return _build(
            records, meta, given_space, text, value_column, time_column, params, constant_time
        )
    path = Path(text)
    if not path.is_file():
        raise LogError(f"no log file at {path}")
    records = _read_table(path)
    meta: dict[str, Any] = {}
    if isinstance(records, dict):
        records, meta = _from_paper_json(records, path, method)
    elif method is not None:
        records = [r for r in records if str(r.get("method")) == method]
    if not records:
        raise LogError(
            f"{path}: the log holds no trials" + (f" of method {method!r}" if method else "")
        )
    if any(str(k).startswith("param:") for k in records[0]):
        records, meta = _from_centaur_export(records)
    given_space = _resolve_space(space, records, None)
    return _build(
        records, meta, given_space, str(path), value_column, time_column, params, constant_time
    )


def read_logs(sources: list[str | Path], **options: Any) -> TrialLog:
    """Several logs as one (same space); one source is just :func:`read_log`."""
    if len(sources) == 1:
        return read_log(sources[0], **options)
    logs = [read_log(src, **options) for src in sources]
    first = logs[0]
    spaces = [log.space for log in logs]
    same = all(sp.names == first.space.names and sp.params == first.space.params for sp in spaces)
    configs = [c for log in logs for c in log.configs]
    if same:
        space = first.space
        notes = list(first.notes)
    elif options.get("space") is None and all(sp.names == first.space.names for sp in spaces):
        space, notes = infer_space(configs, first.space.names)
        space = replace(
            space,
            metric=first.space.metric,
            direction=first.space.direction,
            failure_value=first.space.failure_value,
        )
    else:
        raise LogError(
            "the logs have different parameters "
            f"({[log.space.names for log in logs]}); fit them separately or pass --space"
        )
    return TrialLog(
        space=space,
        configs=configs,
        outcomes=[o for log in logs for o in log.outcomes],
        values=[v for log in logs for v in log.values],
        times=[t for log in logs for t in log.times],
        source=" + ".join(log.source for log in logs),
        notes=notes,
        sources=[log.source for log in logs],
    )


# -- readers -------------------------------------------------------------------------------------
def _read_table(path: Path) -> list[dict[str, Any]] | dict[str, Any]:
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".json", ".json.gz"):
            data = json.loads(_read_text(path))
            if isinstance(data, dict) and isinstance(data.get("trials"), list):
                return data["trials"]
            if isinstance(data, list | dict):
                return data
            raise LogError(f"{path}: expected a JSON list of trial records or a JSON object")
        if suffix in (".jsonl", ".ndjson"):
            return [json.loads(line) for line in _read_text(path).splitlines() if line.strip()]
        import pandas as pd

        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt", ".csv.gz"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise LogError(
                f"{path}: unknown log format {suffix!r}; use .csv, .tsv, .parquet, .json or .jsonl"
            )
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: cannot be read as {suffix}: {e}") from None
    except ImportError as e:
        raise LogError(
            f"{path}: reading {suffix} needs pandas (and pyarrow for Parquet): {e}"
        ) from None
    return [{k: _unbox(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _read_text(path: Path) -> str:
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def _unbox(v: Any) -> Any:
    """pandas' NaN for an empty cell becomes None; numpy scalars become Python ones."""
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _from_paper_json(
    data: dict[str, Any], path: Path, method: str | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Flatten ``{method: {seed: [record, ...]}}`` into records with method and seed columns."""
    out: list[dict[str, Any]] = []
    methods = list(data)
    if method is not None:
        if method not in data:
            raise LogError(f"{path}: no method {method!r}; the log has {methods}")
        methods = [method]
    for m in methods:
        seeds = data[m]
        if not isinstance(seeds, dict) or not all(isinstance(v, list) for v in seeds.values()):
            raise LogError(
                f"{path}: a JSON object must map method -> seed -> list of trial records "
                f"(the paper's format) or hold a 'trials' list; {m!r} does not"
            )
        for seed, trials in seeds.items():
            for rec in trials:
                if not isinstance(rec, dict):
                    raise LogError(f"{path}: {m}/{seed} holds a non-record entry {rec!r}")
                out.append({**rec, "method": m, "seed": seed})
    meta = {
        "format": "paper-json",
        "value_column": "val_bpb",
        "time_column": "wt",
        "failure_value": PAPER_FAILURE_VALUE,
        "metric": "val_bpb",
        "direction": "minimize",
    }
    return out, meta


def _from_centaur_export(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``centaur export`` rows -> records with params unprefixed; trials that never ran dropped."""
    out = []
    names: list[str] = []
    for r in rows:
        if str(r.get("outcome") or "").lower() in NOT_RAN:
            continue
        if str(r.get("state") or "COMPLETE").upper() not in ("COMPLETE", "FAIL"):
            continue
        rec = {k: v for k, v in r.items() if not str(k).startswith("param:")}
        for k, v in r.items():
            if str(k).startswith("param:"):
                name = k[len("param:") :]
                rec[name] = v
                if name not in names:
                    names.append(name)
        out.append(rec)
    has_wall = any(r.get("time_wall") is not None for r in out)
    meta = {
        "format": "centaur-export",
        "value_column": "value",
        "outcome_column": "outcome",
        "time_column": "time_wall" if has_wall else "time_training",
        "param_columns": names,
    }
    return out, meta


def _from_storage(url: str, study_name: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Trials of one study, several (``a,b``) or every study (``all``) in a storage.

    Several studies must share one search space (a bench grid's cells of one task do).
    """
    import optuna

    from centaur_hpo.records import rows, study_info
    from centaur_hpo.storage import open_storage

    if "://" not in url:
        if not Path(url).is_file():
            raise LogError(f"no study database at {url}")
        url = f"sqlite:///{Path(url).resolve()}"
    storage = open_storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name is None:
        if len(names) != 1:
            raise LogError(
                f"name the study with --study (one name, several as a,b, or all); the storage "
                f"holds {names}"
            )
        wanted = names
    elif study_name == "all":
        wanted = names
    else:
        wanted = [n.strip() for n in study_name.split(",") if n.strip()]
    missing = [n for n in wanted if n not in names]
    if missing or not wanted:
        raise LogError(f"no study {', '.join(missing) or '(none)'!r} in {url}; it holds {names}")
    records: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for name in wanted:
        study = optuna.load_study(study_name=name, storage=storage)
        recs, m = _from_centaur_export(rows(study))
        info = study_info(study)
        m.update(
            metric=info.get("metric"),
            direction=info.get("direction"),
            failure_value=info.get("failure_value"),
            params=info.get("space"),
            format="centaur-study",
        )
        if meta and (m["params"] != meta["params"] or m["metric"] != meta["metric"]):
            raise LogError(
                f"studies {wanted[0]!r} and {name!r} have different search spaces or metrics; "
                "fit them separately (--study NAME)"
            )
        meta = meta or m
        records.extend({**r, "study": name} for r in recs)
    return records, meta


# -- the space -----------------------------------------------------------------------------------
def _resolve_space(
    space: SearchSpace | str | Path | None,
    records: list[dict[str, Any]],
    recorded: Mapping[str, Any] | None,
) -> SearchSpace | None:
    """The space given by the user, else the one a centaur study recorded, else None (inferred)."""
    if isinstance(space, SearchSpace):
        return space
    if space is not None:
        if str(space) == "autoresearch":
            from centaur_hpo.tasks.autoresearch_sim import space as autoresearch_space

            return autoresearch_space()
        from centaur_hpo.tasks.registry import SCRIPT_TASKS, script_task

        if str(space) in SCRIPT_TASKS:  # a built-in task: its script's defaults, its space file
            from centaur_hpo.spaces import space_for_script

            script, space_file = script_task(str(space))
            return space_for_script(script, space_file)
        from centaur_hpo.space import build_space, load_space_file
        from centaur_hpo.spaces import BUILTIN, builtin_path

        path = builtin_path(str(space)) if str(space) in BUILTIN else Path(space)
        spec = load_space_file(path)
        first = records[0] if records else {}
        knobs = {n: first.get(n) for n in spec.get("params", {})}
        try:
            return build_space(knobs, spec, source=str(path))
        except SpaceError as e:
            raise LogError(f"space {path}: {e}") from None
    if recorded:
        first = records[0] if records else {}
        params = {}
        for name, d in recorded.items():
            choices = tuple(d["choices"]) if "choices" in d else None
            params[name] = Param(
                name,
                d["type"],
                low=d.get("low"),
                high=d.get("high"),
                log=bool(d.get("log")),
                choices=choices,
                power_of_two=bool(d.get("power_of_two")),
                default=first.get(name),
            )
        return SearchSpace(params=params)
    return None


def infer_space(configs: list[Config], names: list[str]) -> tuple[SearchSpace, list[str]]:
    """A space that covers the logged values, with the rules it used (stated in the notes)."""
    params: dict[str, Param] = {}
    notes = []
    for name in names:
        values = [c[name] for c in configs if c.get(name) is not None]
        default = configs[0][name]
        if all(isinstance(v, bool) for v in values):
            params[name] = Param(name, "bool", default=bool(default))
        elif all(_is_number(v) for v in values):
            lo, hi = float(min(values)), float(max(values))
            if lo == hi:
                notes.append(f"{name} has one value ({lo:g}) in the log: kept as a constant")
                continue
            is_int = all(float(v).is_integer() for v in values)
            pow2 = (
                is_int
                and lo >= 1
                and all(_is_pow2(int(v)) for v in values)
                and len(set(values)) >= 3
            )
            log = lo > 0 and hi / lo >= 10
            params[name] = Param(
                name,
                "int" if is_int else "float",
                low=int(lo) if is_int else lo,
                high=int(hi) if is_int else hi,
                log=log or pow2,
                power_of_two=pow2,
                default=int(default) if is_int else float(default),
            )
        else:
            numbers = [v for v in values if _number(v) is not None]
            if numbers and len(numbers) >= len(values) / 2:
                text = next((v for v in values if _number(v) is None), values[0])
                raise LogError(
                    f"parameter column {name!r} mixes numbers and text (e.g. {text!r}); fix those "
                    "entries, or pass --space to state the parameter's type"
                )
            choices = tuple(sorted({str(v) for v in values}))
            params[name] = Param(name, "categorical", choices=choices, default=str(default))
    notes.append(
        "space inferred from the log: bounds = observed min/max, log scale where max/min >= 10, "
        "power of two where every value is one; default = the first trial (pass --space to state it)"
    )
    return SearchSpace(params=params), notes


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


# -- checks and assembly -------------------------------------------------------------------------
def _pick(columns: Iterable[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    cols = list(columns)
    if wanted is not None:
        return wanted if wanted in cols else None
    lower = {c.lower(): c for c in cols}
    return next((lower[c] for c in candidates if c in lower), None)


def _build(
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    space: SearchSpace | None,
    source: str,
    value_column: str | None,
    time_column: str | None,
    params: list[str] | None,
    constant_time: float | None,
) -> TrialLog:
    if not records:
        raise LogError(f"{source}: the log holds no trials that ran")
    columns: list[str] = []
    for r in records:
        columns.extend(k for k in r if k not in columns)
    notes: list[str] = []
    vcol = _pick(columns, value_column or meta.get("value_column"), VALUE_COLUMNS)
    if vcol is None:
        which = f"column {value_column!r}" if value_column else f"any of {list(VALUE_COLUMNS)}"
        raise LogError(
            f"{source}: no value column ({which} not found among {columns}); "
            "name the column that holds the metric with --value COLUMN"
        )
    tcol = _pick(columns, time_column or meta.get("time_column"), TIME_COLUMNS)
    if tcol is None and constant_time is None:
        which = f"column {time_column!r}" if time_column else f"any of {list(TIME_COLUMNS)}"
        raise LogError(
            f"{source}: no wall-time column ({which} not found among {columns}); name it with "
            "--time COLUMN, or pass --constant-time SECONDS to charge every trial the same"
        )
    ocol = meta.get("outcome_column") or _pick(columns, None, OUTCOME_COLUMNS)
    scol = None if ocol else _pick(columns, None, SUCCESS_COLUMNS)
    used = {vcol, tcol, ocol, scol}
    if params is None and meta.get("param_columns"):
        params = list(meta["param_columns"])
    elif params is None:
        params = [
            c
            for c in columns
            if c not in used and c.lower() not in META_COLUMNS and not c.startswith("metric:")
        ]
    else:
        missing = [p for p in params if p not in columns]
        if missing:
            raise LogError(f"{source}: --params names columns the log lacks: {missing}")
    if space is not None:
        unknown = [p for p in params if p not in space.params]
        if unknown:
            raise LogError(
                f"{source}: the log has parameter columns {unknown} that the space does not "
                f"define ({space.names}); drop them, list the real ones with --params, or give "
                "a space that has them"
            )
        absent = [n for n in space.names if n not in params]
        if absent:
            raise LogError(f"{source}: the space's parameters {absent} have no column in the log")
        params = space.names
    if not params:
        raise LogError(
            f"{source}: no parameter columns found (columns: {columns}); name them with --params"
        )
    failure_value = meta.get("failure_value")
    configs, outcomes, values, times = [], [], [], []
    bad_values: list[str] = []
    bad_params: list[str] = []
    for i, r in enumerate(records):
        outcome = _outcome(r, ocol, scol, vcol, failure_value)
        if outcome is None:
            continue
        config = {p: r.get(p) for p in params}
        for p in params:
            v = config[p]
            if v is None:
                bad_params.append(f"row {i}: {p} is empty")
        raw = r.get(vcol)
        value: float | None = None
        if outcome == "ok":
            value = _number(raw)
            if value is None:
                bad_values.append(f"row {i}: {raw!r}")
        t = constant_time if tcol is None else _number(r.get(tcol))
        if t is None or t < 0:
            bad_values.append(f"row {i}: time {r.get(tcol)!r}")
            t = 0.0
        configs.append(config)
        outcomes.append(outcome)
        values.append(value)
        times.append(float(t))
    if bad_params:
        raise LogError(f"{source}: parameters missing in some trials: {'; '.join(bad_params[:5])}")
    if bad_values:
        raise LogError(
            f"{source}: non-numeric or missing values in column {vcol!r}/{tcol!r} of successful "
            f"trials ({len(bad_values)}): {'; '.join(bad_values[:5])}; fix or drop those rows"
        )
    if not configs:
        raise LogError(f"{source}: the log holds no trials that ran")
    if outcomes.count("ok") == 0:
        raise LogError(
            f"{source}: the log has no successful trial ({len(outcomes)} failed); a surrogate "
            "of the metric needs successes"
        )
    if space is None:
        space, more = infer_space(configs, params)
        notes.extend(more)
        configs = [{n: c[n] for n in space.names} for c in configs]
    else:
        configs = [_check_config(space, c, i, source) for i, c in enumerate(configs)]
    if meta.get("metric") or meta.get("direction"):
        space = replace(
            space,
            metric=meta.get("metric") or space.metric,
            direction=meta.get("direction") or space.direction,
            failure_value=meta.get("failure_value", space.failure_value),
        )
    if scol and not ocol:
        notes.append("the log records success only: every failure is simulated as 'crash'")
    elif meta.get("format") == "paper-json":
        notes.append("paper JSON records success only: every failure is simulated as 'crash'")
    if tcol is None:
        notes.append(f"no time column: every trial charged {constant_time} s")
    return TrialLog(space, configs, outcomes, values, times, source, notes)


def _check_config(space: SearchSpace, config: Config, row: int, source: str) -> Config:
    fixed = {}
    for name, p in space.params.items():
        v = config[name]
        if p.type in ("int", "float"):
            if not _is_number(v):
                num = _number(v)
                if num is None:
                    raise LogError(f"{source}: row {row}: {name}={v!r} is not a number")
                v = num
            v = int(round(v)) if p.type == "int" else float(v)
        elif p.type == "bool" and not isinstance(v, bool):
            v = str(v).strip().lower() in ("true", "1", "yes")
        fixed[name] = v
        if not p.contains(v):
            raise LogError(
                f"{source}: row {row}: {name}={v!r} lies outside the space "
                f"({p.describe().strip()}); fix the row or widen the space"
            )
    return fixed


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    try:
        x = float(str(v).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _outcome(
    r: Mapping[str, Any], ocol: str | None, scol: str | None, vcol: str, failure_value: Any
) -> str | None:
    """'ok', a failure class, or None for a trial that never ran."""
    if ocol:
        o = str(r.get(ocol) or "").strip().lower()
        if o in NOT_RAN:
            return None
        if o in ("ok", "success", "complete", "completed", "succeeded"):
            return "ok"
        if o in FAILURE_CLASSES:
            return o
        return "crash" if o else "ok"
    v = _number(r.get(vcol))
    at_penalty = v is not None and failure_value is not None and v >= float(failure_value)
    if scol:
        s = r.get(scol)
        ok = s if isinstance(s, bool) else str(s).strip().lower() in ("true", "1", "yes", "ok")
        return "ok" if ok and not at_penalty else "crash"
    # No outcome column: an empty value or the failure value marks a failure; any other entry
    # is a success (and must be a number, which the caller checks).
    raw = r.get(vcol)
    if raw is None or str(raw).strip() == "" or at_penalty:
        return "crash"
    return "ok"
