"""LLM methods in a grid: the embedded model for real, then the same grid replayed from the
first one's stored calls (a cassette), which must give the same studies without the model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.bench.objectives import spec
from tests.bench.test_grid import cell_results

from centaur_hpo.bench import analysis

pytest.importorskip("llama_cpp")


def _bench(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "centaur_hpo.cli",
        "bench",
        "--methods",
        "llm_agent",
        "--seeds",
        "0",
        "--tasks",
        f"sphere={spec('sphere')}",
        "--trials",
        "3",
        "--failure-value",
        "100",
        "--storage",
        url,
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_llm_cell_with_embedded_model_then_replayed(tmp_path: Path) -> None:
    live = f"sqlite:///{tmp_path / 'live.db'}"
    res = _bench(live, tmp_path / "live")
    assert res.returncode == 0, res.stdout + res.stderr
    (cell,) = analysis.load_cells(live)
    assert cell.llm_calls >= 2 and cell.llm_tokens_in > 0  # trial 0 is the default: no call
    replay = f"sqlite:///{tmp_path / 'replay.db'}"
    res = _bench(replay, tmp_path / "replay", "--replay", live)
    assert res.returncode == 0, res.stdout + res.stderr
    assert cell_results(replay) == cell_results(live)
