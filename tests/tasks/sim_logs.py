"""Trial logs for the surrogate tests, generated from autoresearch-sim so the truth is known.

Configurations are drawn around the default (so most run and the landscape is learnable), and
a few are repeated, as the paper's protocol repeats the default as trial 0 of every study.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from centaur_hpo.tasks import autoresearch_sim as ar


def configs(n: int = 110, seed: int = 0) -> list[dict[str, Any]]:
    space = ar.space()
    rng = np.random.default_rng(seed)
    out = [dict(ar.DEFAULTS) for _ in range(6)]  # the default, six times
    while len(out) < n:
        c = {}
        for p in space:
            if p.type == "categorical":
                c[p.name] = p.choices[rng.integers(len(p.choices))]
            else:
                u = space.to_unit(p.name, ar.DEFAULTS[p.name]) + 0.2 * rng.standard_normal()
                c[p.name] = space.from_unit(p.name, u)
        c = space.repair(c)
        out.append(c)
        if len(out) % 25 == 0:  # a few more repeats
            out.extend([dict(c), dict(c)])
    return out[:n]


def records(n: int = 110, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of a generic log: params + value + outcome + wall_time (value empty on failure)."""
    _, fn, _ = ar.make_task(seed)
    rows = []
    for i, c in enumerate(configs(n, seed)):
        out = fn(c, i)
        rows.append({**c, "value": out.value, "outcome": out.outcome, "wall_time": out.time})
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(rows[0])
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def write_paper_json(path: Path, n_per_seed: int = 40) -> Path:
    """The paper's format: method -> seed -> [{tid, val_bpb, success, wt, HPs...}], failures 100.0."""
    data: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for m, method in enumerate(("tpe", "random")):
        data[method] = {}
        for seed in range(3):
            rows = records(n_per_seed, seed=10 * m + seed)
            data[method][str(seed)] = [
                {
                    "tid": i,
                    **{k: v for k, v in r.items() if k not in ("value", "outcome", "wall_time")},
                    "val_bpb": r["value"] if r["outcome"] == "ok" else 100.0,
                    "success": r["outcome"] == "ok",
                    "wt": r["wall_time"],
                }
                for i, r in enumerate(rows)
            ]
    path.write_text(json.dumps(data))
    return path
