"""The HTML report, rendered by real headless Chromium, against the raw trial records."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
from tests.bench.objectives import spec

from centaur_hpo.bench.grid import GridSpec, TaskRef, run_cell, write_grid_file
from centaur_hpo.bench.report import write_report
from centaur_hpo.bench.store import open_bench_storage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
METHODS = ["random", "tpe", "cmaes"]
SEEDS = [0, 1, 2]


class Cells(HTMLParser):
    """Collect every table row's data-* keys and its cells' (data-col, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self._table = ""
        self._col: str | None = None

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id", "")
        elif tag == "tr":
            self.rows.append(
                (self._table, {k[5:]: v for k, v in a.items() if k.startswith("data-")}, {})
            )
        elif tag == "td" and self.rows:
            self._col = a.get("data-col")
            self.rows[-1][2][self._col or ""] = ""

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "td":
            self._col = None

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._col is not None:
            self.rows[-1][2][self._col] += data


def raw_bests(url: str) -> dict[str, list[float]]:
    """Best successful value per method and seed, read straight from Optuna's trials."""
    storage = open_bench_storage(url)
    out: dict[str, list[float]] = {}
    for m in METHODS:
        for s in SEEDS:
            study = optuna.load_study(study_name=f"bench:sphere:{m}:s{s}", storage=storage)
            vals = [
                t.user_attrs["value"]
                for t in study.get_trials()
                if t.user_attrs.get("outcome") == "ok"
            ]
            out.setdefault(m, []).append(min(vals))
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("grid")
    url = f"sqlite:///{out / 'bench.db'}"
    g = GridSpec(
        METHODS,
        SEEDS,
        [TaskRef("sphere", spec("sphere"))],
        budget_seconds=4 * 3600,
        failure_value=100.0,
    )
    for job in g.jobs(url, out):
        assert run_cell(job).status == "ran"
    write_grid_file(out, g, url, "centaur bench --methods random,tpe,cmaes (test)")
    return out, url


def test_report_files_and_tables(grid: tuple[Path, str], tmp_path: Path) -> None:
    out, url = grid
    paths = write_report(str(out), tmp_path / "r.html")
    names = sorted(p.name for p in paths)
    assert names == [
        "r.html",
        "r.md",
        "r_curves_sphere.svg",
        "r_incumbents.csv",
        "r_per_seed.csv",
        "r_summary.csv",
        "r_tests.csv",
    ]
    md = (tmp_path / "r.md").read_text()
    assert "centaur bench --methods random,tpe,cmaes (test)" in md
    assert "smallest possible two-sided p" in md  # three seeds cannot be significant
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/install-chromium.sh)"
)
def test_report_renders_in_chromium_with_correct_numbers(
    grid: tuple[Path, str], tmp_path: Path
) -> None:
    out, url = grid
    html_path = tmp_path / "report.html"
    write_report(str(out), html_path)
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        flags + ["--dump-dom", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    parser = Cells()
    parser.feed(dom)
    summary = {
        r[1]["method"]: r[2] for r in parser.rows if r[0] == "summary-sphere" and "method" in r[1]
    }
    assert sorted(summary) == sorted(METHODS)
    bests = raw_bests(url)
    for m in METHODS:
        assert summary[m]["best_mean"] == f"{statistics.fmean(bests[m]):.5g}"
        assert summary[m]["best_median"] == f"{statistics.median(bests[m]):.5g}"
        assert summary[m]["best_std"] == f"{statistics.stdev(bests[m]):.5g}"
        assert summary[m]["seeds"] == "3"
    per_seed = [r for r in parser.rows if r[0] == "seeds-sphere" and "method" in r[1]]
    assert len(per_seed) == 9
    for _, keys, cols in per_seed:
        assert cols["best"] == f"{bests[keys['method']][int(keys['seed'])]:.5g}"
    assert "smallest possible two-sided p" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        flags + ["--window-size=1280,2200", f"--screenshot={shot}", html_path.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a blank page is a few kB
    keep = os.environ.get("CENTAUR_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "report.png")
        shutil.copy(html_path, Path(keep) / "report.html")


def test_report_command_and_bad_source(grid: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = grid
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "centaur_hpo.cli",
            "report",
            str(out),
            "-o",
            str(tmp_path / "c.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "c.html").is_file()
    res = subprocess.run(
        [sys.executable, "-m", "centaur_hpo.cli", "report", str(tmp_path / "nothing-here")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "no grid folder" in res.stderr
