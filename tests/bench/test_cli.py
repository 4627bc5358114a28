"""`centaur bench` / `centaur report` on the command line: flags, presets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.bench.objectives import spec

from centaur_hpo.bench.presets import PAPER_LIMITS, paper
from centaur_hpo.cli import main


def test_bad_grids_are_refused_with_what_to_fix(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = [
        "bench",
        "--seeds",
        "0-1",
        "--tasks",
        f"s={spec('sphere')}",
        "--trials",
        "3",
        "--out",
        str(tmp_path),
    ]
    assert main([*base, "--methods", "tpe,bogus"]) == 2
    assert "unknown method(s) ['bogus']" in capsys.readouterr().err
    assert main([*base, "--methods", "tpe", "--option", "ratio=3"]) == 2
    assert "METHOD.KEY=VALUE" in capsys.readouterr().err
    assert main(["bench", "--methods", "tpe", "--seeds", "0", "--tasks", "x"]) == 2
    assert "budget" in capsys.readouterr().err
    assert main([*base, "--methods", "tpe", "--seeds", "3-1"]) == 2
    assert "runs backwards" in capsys.readouterr().err


def test_dry_run_then_run_then_everything_is_done(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = [
        "bench",
        "--methods",
        "random,tpe",
        "--seeds",
        "0-1",
        "--tasks",
        f"s={spec('sphere')}",
        "--trials",
        "4",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 cells (0 done, 4 to run)" in out and "missing  bench:s:tpe:s1" in out
    assert main([*args, "--report"]) == 0
    out = capsys.readouterr().out
    assert out.count("] ran") == 4 and (tmp_path / "report.html").is_file()
    assert main(args) == 0
    assert "4 cells (4 done, 0 to run)" in capsys.readouterr().out


def test_paper_preset_is_the_papers_protocol() -> None:
    p = paper()
    assert p["budget"] == "24h" and p["failure_value"] == 100.0 and p["default_first"]
    assert p["seeds"] == "0-7" and "autoresearch-sim" in p["tasks"][0]
    assert {
        "random",
        "tpe",
        "cmaes",
        "gp",
        "smac",
        "llm_agent",
        "llambo",
        "centaur",
        "llm_warm_start",
    } == set(p["methods"])
    assert set(p["limits"]) == set(PAPER_LIMITS)  # every shortened method is listed
    assert not set(p["limits"]) & {"random", "tpe", "cmaes", "gp", "smac"}  # classical: in full


def test_unknown_preset_or_config(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "nope"])
    assert main(["bench", "--config", str(tmp_path / "missing.toml")]) == 2
