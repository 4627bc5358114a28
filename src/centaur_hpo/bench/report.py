"""``centaur report``: one self-contained HTML page plus CSV and Markdown tables of a grid.

Everything is computed from the trial records by :mod:`centaur_hpo.bench.analysis`; the page
embeds its charts as inline SVG, so it can be mailed or archived as one file. Each number cell
carries its full-precision value in ``data-value`` so a test can check the rendered page
against the raw records.
"""

from __future__ import annotations

import csv
import html
import importlib.metadata
import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from centaur_hpo.bench import analysis, svg
from centaur_hpo.bench.grid import GRID_FILE, safe_name
from centaur_hpo.methods import LLM_METHODS

PACKAGES = (
    "centaur-hpo",
    "optuna",
    "cmaes",
    "numpy",
    "scipy",
    "smac",
    "llama-cpp-python",
    "dask",
    "distributed",
)


def resolve_source(source: str) -> tuple[str, dict[str, Any]]:
    """(storage URL, grid file contents or {}) for a grid folder, a SQLite file or a URL."""
    p = Path(source)
    if p.is_dir():
        grid = p / GRID_FILE
        if grid.is_file():
            data = json.loads(grid.read_text())
            return data["storage"], data
        db = p / "bench.db"
        if db.is_file():
            return f"sqlite:///{db.resolve()}", {}
        raise ValueError(f"{source} holds neither {GRID_FILE} nor bench.db; pass the storage URL")
    if "://" in source:
        return source, {}
    if p.is_file():
        return f"sqlite:///{p.resolve()}", {}
    raise ValueError(f"no grid folder, SQLite file or storage URL {source!r}")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _f(v: Any, digits: int = 5) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return html.escape(str(v))


def _td(v: Any, col: str, digits: int = 5) -> str:
    data = ""
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        data = f' data-value="{v!r}"'
    return f'<td data-col="{col}"{data}>{_f(v, digits)}</td>'


def _table(
    rows: list[dict[str, Any]],
    cols: list[tuple[str, str]],
    key_cols: tuple[str, ...],
    table_id: str,
) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in cols)
    body = []
    for r in rows:
        keys = "".join(f' data-{k}="{html.escape(str(r.get(k)))}"' for k in key_cols)
        cells = "".join(_td(r.get(c), c) for c, _ in cols)
        body.append(f"<tr{keys}>{cells}</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


SUMMARY_COLS = [
    ("method", "method"),
    ("seeds", "seeds"),
    ("best_mean", "best mean"),
    ("best_std", "std"),
    ("best_median", "median"),
    ("regret_mean", "regret mean"),
    ("regret_median", "regret median"),
    ("trials_mean", "trials/seed"),
    ("failure_share", "failure share"),
    ("diversity", "diversity"),
    ("llm_calls", "LLM calls"),
    ("llm_tokens", "LLM tokens"),
    ("llm_seconds", "LLM s"),
]


def build(
    storage: str, grid: dict[str, Any] | None = None, command: str | None = None
) -> dict[str, Any]:
    """Everything the report shows, computed once (the HTML, CSV and Markdown share it)."""
    cells = analysis.load_cells(storage)
    if not cells:
        raise ValueError(f"no benchmark cells in {storage}; run `centaur bench` first")
    return {
        "cells": cells,
        "summary": analysis.summary_rows(cells),
        "per_seed": analysis.per_seed_rows(cells),
        "tests": analysis.paired_tests(cells),
        "ranks": analysis.average_ranks(cells),
        "grid": grid or {},
        "command": command or (grid or {}).get("command") or _cell_command(cells, storage),
        "storage": storage,
        "versions": versions(),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _cell_command(cells: list[analysis.Cell], storage: str) -> str:
    from centaur_hpo.records import STUDY_INFO_KEY
    from centaur_hpo.storage import open_storage

    st = open_storage(storage)
    info = json.loads(
        st.get_study_system_attrs(st.get_study_id_from_name(cells[0].name)).get(
            STUDY_INFO_KEY, "{}"
        )
    )
    return info.get("command") or "(not recorded)"


def _curves(task: str, methods: dict[str, list[analysis.Cell]], clock: str) -> str:
    labels = {
        "training": ("training time (h)", 3600.0),
        "total": ("total time incl. optimizer and LLM (h)", 3600.0),
        "trial": ("trial number", 1.0),
    }
    xlabel, scale = labels[clock]
    series = []
    for i, (method, cs) in enumerate(sorted(methods.items())):
        color = svg.PALETTE[i % len(svg.PALETTE)]
        b = analysis.band(cs, clock)
        if b is None:
            continue
        for _, x, y in b.seeds:
            series.append(svg.Series(method, x, y, color, width=0.7, opacity=0.35, legend=False))
        series.append(
            svg.Series(
                f"{method} (n={len(cs)})",
                b.x,
                b.mean,
                color,
                b.lo,
                b.hi,
                step=False,
                extra={"data-method": method},
            )
        )
    direction = next(iter(methods.values()))[0].direction
    return svg.line_chart(
        series,
        title=f"{task}: best so far vs {clock} "
        f"({'lower' if direction == 'minimize' else 'higher'} is better)",
        xlabel=xlabel,
        ylabel="best value",
        x_scale=scale,
    )


CSS = """
body{font-family:sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:6px 10px;margin:8px 0}
code,pre{background:#f6f6f6;padding:2px 4px;font-size:12px;white-space:pre-wrap}
.charts{display:flex;flex-wrap:wrap;gap:8px}
"""


def render_html(data: dict[str, Any]) -> str:
    cells: list[analysis.Cell] = data["cells"]
    grouped = analysis.by_task_method(cells)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>centaur benchmark report"
        f"</title><style>{CSS}</style></head><body>"
    ]
    parts.append("<h1>Benchmark report</h1>")
    tasks = sorted(grouped)
    methods = sorted({c.method for c in cells})
    seeds = sorted({c.seed for c in cells})
    parts.append(
        f"<p>{len(cells)} cells: {len(tasks)} task(s) &times; {len(methods)} method(s) "
        f"&times; seeds {html.escape(_seed_text(seeds))}. Generated {data['generated']}."
        "</p>"
    )
    parts.append(
        f"<p>Command: <code id='command'>{html.escape(data['command'])}</code><br>"
        f"Storage: <code>{html.escape(_redact(data['storage']))}</code><br>Versions: "
        + ", ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in data["versions"].items())
        + "</p>"
    )
    shortened = _shortened(cells)
    if shortened:
        parts.append(
            "<div class='warn' id='limits'>Methods run on fewer seeds or trials than the others "
            "(their rows are not comparable end points): "
            + html.escape("; ".join(shortened))
            + "</div>"
        )
    unfinished = [c.name for c in cells if not c.done]
    if unfinished:
        parts.append(
            f"<div class='warn'>{len(unfinished)} cell(s) are unfinished (the grid is "
            f"still running or was stopped): {html.escape(', '.join(unfinished[:10]))}"
            "</div>"
        )
    stopped = [(c.name, c.stopped) for c in cells if c.stopped]
    for name, why in stopped[:10]:
        parts.append(
            f"<div class='warn'>{html.escape(name)} stopped early: {html.escape(str(why))}</div>"
        )
    for task in tasks:
        ms = grouped[task]
        rows = [r for r in data["summary"] if r["task"] == task]
        direction = next(iter(ms.values()))[0].direction
        optimum = next(iter(ms.values()))[0].optimum
        parts.append(f"<h2 id='task-{html.escape(task)}'>Task {html.escape(task)}</h2>")
        parts.append(
            f"<p>Direction: {direction}. Known optimum: {_f(optimum)}. Best = best "
            "successful value of a seed's study; mean/std/median are over seeds.</p>"
        )
        parts.append(_table(rows, SUMMARY_COLS, ("task", "method"), f"summary-{task}"))
        parts.append("<h3>Outcomes</h3>")
        classes = sorted({o for r in rows for o in r["outcomes"]})
        orows = [
            {
                "method": r["method"],
                **{o: r["outcomes"].get(o, 0) for o in classes},
                "total": r["trials_total"],
            }
            for r in rows
        ]
        parts.append(
            _table(
                orows,
                [("method", "method")] + [(o, o) for o in classes] + [("total", "trials")],
                ("method",),
                f"outcomes-{task}",
            )
        )
        parts.append(
            "<h3>Best so far</h3><p>Thick line: mean over seeds (drawn where every seed "
            "has a success), band: &plusmn;1 std over seeds; thin lines: each seed.</p>"
        )
        parts.append(
            "<div class='charts'>"
            + "".join(_curves(task, ms, c) for c in ("training", "total", "trial"))
            + "</div>"
        )
        tt = next((t for t in data["tests"] if t.task == task), None)
        if tt is not None:
            parts.append("<h3>Paired tests (Wilcoxon signed-rank, Holm-corrected)</h3>")
            if tt.warning:
                parts.append(
                    f"<div class='warn' id='warn-{html.escape(task)}'>"
                    f"{html.escape(tt.warning)}</div>"
                )
            trows = [
                {
                    "pair": f"{t.a} vs {t.b}",
                    "n": t.n,
                    "wins_a": t.wins_a,
                    "wins_b": t.wins_b,
                    "median_diff": t.median_diff,
                    "p": t.p,
                    "p_holm": t.p_holm,
                }
                for t in tt.tests
            ]
            parts.append(
                _table(
                    trows,
                    [
                        ("pair", "pair"),
                        ("n", "seeds"),
                        ("wins_a", "wins A"),
                        ("wins_b", "wins B"),
                        ("median_diff", "median A-B"),
                        ("p", "p"),
                        ("p_holm", "p (Holm)"),
                    ],
                    ("pair",),
                    f"tests-{task}",
                )
            )
        parts.append("<details><summary>Per seed and incumbent traces</summary>")
        prow = [r for r in data["per_seed"] if r["task"] == task]
        parts.append(
            _table(
                prow,
                [
                    ("method", "method"),
                    ("seed", "seed"),
                    ("best", "best"),
                    ("regret", "regret"),
                    ("trials", "trials"),
                    ("failures", "failures"),
                    ("llm_calls", "LLM calls"),
                ],
                ("task", "method", "seed"),
                f"seeds-{task}",
            )
        )
        for method in sorted(ms):
            for c in sorted(ms[method], key=lambda c: c.seed):
                inc = "; ".join(
                    f"#{i['number']} {_f(i['value'])} at {i['time'] / 3600:.2f}h"
                    for i in c.incumbents()
                )
                parts.append(
                    f"<p><b>{html.escape(method)} seed {c.seed}</b>: {html.escape(inc)}</p>"
                )
        parts.append("</details>")
    rk = data["ranks"]
    if rk is not None:
        parts.append("<h2>Average ranks</h2>")
        block = (
            "tasks (mean best over seeds)"
            if rk.block_kind == "task"
            else "the seeds of the single task (paired by seed)"
        )
        fr = (
            f"Friedman chi2 = {rk.friedman[0]:.3f}, p = {rk.friedman[1]:.3g}. "
            if rk.friedman
            else ""
        )
        if rk.left_out:
            parts.append(
                "<p>Not ranked (too few seeds in common with the others): "
                + html.escape(", ".join(rk.left_out))
                + ".</p>"
            )
        parts.append(
            f"<p>Ranks over {len(rk.blocks)} blocks: {html.escape(block)}. {fr}"
            f"Nemenyi critical difference at alpha 0.05: {rk.cd:.3f}; methods joined "
            "by a bar do not differ significantly.</p>"
        )
        rrows = [
            {"method": m, "avg_rank": r}
            for m, r in sorted(rk.avg_ranks.items(), key=lambda kv: kv[1])
        ]
        parts.append(
            _table(
                rrows, [("method", "method"), ("avg_rank", "average rank")], ("method",), "ranks"
            )
        )
        parts.append(
            svg.cd_diagram(
                rk.avg_ranks,
                rk.cd,
                rk.cliques,
                title="Critical difference diagram (Nemenyi, alpha 0.05)",
            )
        )
    llm_cells = [c for c in cells if c.method in LLM_METHODS]
    if llm_cells:
        parts.append(
            "<h2>LLM use</h2><p>Calls, tokens and seconds per LLM cell are in the tables "
            "above; the total clock adds the LLM's latency to each trial.</p>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def _shortened(cells: list[analysis.Cell]) -> list[str]:
    """Methods whose cells had fewer seeds, or a trial cap, compared with the grid's most."""
    by: dict[str, list[analysis.Cell]] = {}
    for c in cells:
        by.setdefault(c.method, []).append(c)
    most = max(len({c.seed for c in cs}) for cs in by.values())
    out = []
    for m, cs in sorted(by.items()):
        seeds = sorted({c.seed for c in cs})
        caps = {c.n_trials_cap for c in cs if c.n_trials_cap is not None}
        budgets = {c.budget_seconds for c in cs}
        if len(seeds) < most or caps:
            cap = f", at most {max(caps)} trials" if caps else ""
            budget = (
                f" of a {max(b for b in budgets if b) / 3600:g} h budget"
                if caps and any(budgets)
                else ""
            )
            out.append(f"{m}: seeds {_seed_text(seeds)}{cap}{budget}")
    return out


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return str(seeds[0])
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _redact(url: str) -> str:
    from centaur_hpo.llm.base import redact_url

    return redact_url(url)


def _csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()}
            )
    return path


def markdown(data: dict[str, Any]) -> str:
    lines = [f"Command: `{data['command']}`", ""]
    shortened = _shortened(data["cells"])
    if shortened:
        lines += [
            "Run on fewer seeds or trials (not comparable end points): "
            + "; ".join(shortened)
            + ".",
            "",
        ]
    cols = ["task"] + [c for c, _ in SUMMARY_COLS]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for r in data["summary"]:
        lines.append("| " + " | ".join(_f(r.get(c)) for c in cols) + " |")
    for tt in data["tests"]:
        if tt.warning:
            lines += ["", f"> {tt.task}: {tt.warning}"]
    rk = data["ranks"]
    if rk is not None:
        if rk.left_out:
            lines += ["", "Not ranked (too few seeds in common): " + ", ".join(rk.left_out)]
        lines += [
            "",
            f"Average ranks over {len(rk.blocks)} {rk.block_kind} blocks "
            f"(Nemenyi CD = {rk.cd:.3f}):",
            "",
            "| method | average rank |",
            "|---|---|",
        ]
        for m, r in sorted(rk.avg_ranks.items(), key=lambda kv: kv[1]):
            lines.append(f"| {m} | {r:.3f} |")
    return "\n".join(lines) + "\n"


def write_report(source: str, output: str | Path, command: str | None = None) -> list[Path]:
    """Write the HTML page and, beside it, the CSV and Markdown tables; return their paths."""
    storage, grid = resolve_source(source)
    data = build(storage, grid, command)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data))
    stem = out.with_suffix("")
    written = [out]
    written.append(_csv(Path(f"{stem}_summary.csv"), data["summary"]))
    written.append(_csv(Path(f"{stem}_per_seed.csv"), data["per_seed"]))
    written.append(
        _csv(
            Path(f"{stem}_tests.csv"),
            [
                {
                    "task": tt.task,
                    "a": t.a,
                    "b": t.b,
                    "n": t.n,
                    "statistic": t.statistic,
                    "p": t.p,
                    "p_holm": t.p_holm,
                    "median_diff": t.median_diff,
                    "wins_a": t.wins_a,
                    "wins_b": t.wins_b,
                    "warning": tt.warning,
                }
                for tt in data["tests"]
                for t in tt.tests
            ],
        )
    )
    written.append(
        _csv(
            Path(f"{stem}_incumbents.csv"),
            [
                {"task": c.task, "method": c.method, "seed": c.seed, **i}
                for c in data["cells"]
                for i in c.incumbents()
            ],
        )
    )
    for task, methods in analysis.by_task_method(data["cells"]).items():
        fig = Path(f"{stem}_curves_{safe_name(task)}.svg")
        fig.write_text(_curves(task, methods, "training"))
        written.append(fig)
    md = Path(f"{stem}.md")
    md.write_text(markdown(data))
    written.append(md)
    return written
