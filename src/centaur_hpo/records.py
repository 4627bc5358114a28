"""Read a study's trials back as plain rows: for tables, CSV export, `centaur status` and analysis.

All of it comes from Optuna's storage, so a study written by any worker, or by a crashed run,
reads the same; nothing is kept beside the storage.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from centaur_hpo.methods.base import NOT_RUN_KEY, OUTCOME_KEY, SOURCE_KEY

STUDY_INFO_KEY = "centaur:info"  # study system attr: what ran this study (JSON)
TIME_KEYS = (
    "time_wall",
    "time_startup",
    "time_training",
    "time_eval",
    "time_optimizer",
    "time_charged",
)


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat dict: number, state, outcome, value, params, times, metrics."""
    ua = t.user_attrs
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "outcome": ua.get(
            OUTCOME_KEY, "ok" if t.state == TrialState.COMPLETE else t.state.name.lower()
        ),
        "value": ua.get("value"),
        "told_value": t.values[0] if t.values else None,
        "source": t.system_attrs.get(SOURCE_KEY, ua.get("source")),
        "rerun_of": ua.get("centaur:rerun_of"),
        "not_run": t.system_attrs.get(NOT_RUN_KEY),
        "error": ua.get("error"),
        "started": t.datetime_start.isoformat() if t.datetime_start else None,
    }
    for k in TIME_KEYS:
        row[k] = ua.get(k)
    for name, value in t.params.items():
        row[f"param:{name}"] = value
    for name, value in (ua.get("metrics") or {}).items():
        row[f"metric:{name}"] = value
    return row


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    return [trial_row(t) for t in study.get_trials(deepcopy=False)]


def ok_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get(OUTCOME_KEY) == "ok" and is_finite(t.user_attrs.get("value"))
    ]


def is_finite(x: Any) -> bool:
    """A real, finite number (bools, None, NaN and infinities are not)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def best_trial(study: optuna.Study, direction: str | None = None) -> FrozenTrial | None:
    """The best *successful* trial (a failed trial's penalty value never counts as best)."""
    direction = direction or study_info(study).get("direction", "minimize")
    trials = ok_trials(study)
    if not trials:
        return None
    key = (
        (lambda t: t.user_attrs["value"])
        if direction == "minimize"
        else (lambda t: -t.user_attrs["value"])
    )
    return min(trials, key=key)


def get_study_attr(study: optuna.Study, key: str, default: Any = None) -> Any:
    """A study system attribute (Optuna 5 reads them through the storage only)."""
    return study._storage.get_study_system_attrs(study._study_id).get(key, default)


def set_study_attr(study: optuna.Study, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)


def study_info(study: optuna.Study) -> dict[str, Any]:
    text = get_study_attr(study, STUDY_INFO_KEY)
    return json.loads(text) if text else {}


def trial_charges(study: optuna.Study) -> list[float]:
    """The charged time of every trial that ran (interrupted ones included), in trial order."""
    return [
        float(c)
        for t in study.get_trials(deepcopy=False)
        if is_finite(c := t.user_attrs.get("time_charged"))
    ]


def charged_seconds(study: optuna.Study) -> float:
    """Budget used so far: the sum of :func:`trial_charges`."""
    return sum(trial_charges(study))


def export_csv(study: optuna.Study, path: str | Path) -> Path:
    """Write the trial table as CSV (one row per trial, params and metrics as columns)."""
    table = rows(study)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for r in table:
        for k in r:
            if k not in columns:
                columns.append(k)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in table:
            w.writerow(r)
    return path


def outcome_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        o = t.user_attrs.get(OUTCOME_KEY)
        if o:
            out[o] = out.get(o, 0) + 1
    return out
