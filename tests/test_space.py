"""Search spaces: space files, inference rules, constraints applied before a trial runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from centaur_hpo.script import read_knobs
from centaur_hpo.space import Param, SearchSpace, SpaceError, build_space, load_space_file
from centaur_hpo.spaces import builtin_path, space_for_script


def test_builtin_autoresearch_space(autoresearch_dir: Path) -> None:
    space = space_for_script(autoresearch_dir / "train.py", "autoresearch")
    assert len(space) == 14
    assert space.params["HEAD_DIM"].power_of_two and space.params["HEAD_DIM"].log
    assert space.params["WINDOW_PATTERN"].choices == (
        "SSSL",
        "SSLL",
        "SLSL",
        "LLLL",
        "SSSS",
        "LSSL",
    )
    assert space.failure_value == 100.0
    default = space.default_config()
    assert default["TOTAL_BATCH_SIZE"] == 2**19 and default["DEPTH"] == 8
    assert space.validate(default) == []


def test_repair_snaps_powers_of_two_and_multiples(autoresearch_dir: Path) -> None:
    space = space_for_script(autoresearch_dir / "train.py", "autoresearch")
    config = space.default_config()
    config.update(HEAD_DIM=100, DEVICE_BATCH_SIZE=200, TOTAL_BATCH_SIZE=70_000, DEPTH=7.6)
    fixed = space.repair(config)
    assert fixed["HEAD_DIM"] == 128  # nearest power of two in log space
    assert fixed["DEVICE_BATCH_SIZE"] == 256
    assert fixed["DEPTH"] == 8  # rounded, never truncated
    assert fixed["TOTAL_BATCH_SIZE"] % (fixed["DEVICE_BATCH_SIZE"] * 2048) == 0
    assert space.validate(fixed) == []
    assert space.validate(config) != []


def test_invalid_categorical_is_not_repaired(autoresearch_dir: Path) -> None:
    space = space_for_script(autoresearch_dir / "train.py", "autoresearch")
    config = {**space.default_config(), "WINDOW_PATTERN": "SSSX"}
    assert space.repair(config)["WINDOW_PATTERN"] == "SSSX"
    assert any("WINDOW_PATTERN" in e for e in space.validate(config))


def test_inferred_bounds_are_documented() -> None:
    space = build_space({"LR": 0.01, "DEPTH": 8, "NAME": "x", "FLAG": True, "WD": 0.0, "NEG": -1})
    assert space.params["LR"].low == pytest.approx(0.001) and space.params["LR"].log
    assert (space.params["DEPTH"].low, space.params["DEPTH"].high) == (2, 32)
    assert space.params["FLAG"].type == "bool"
    assert space.params["WD"].high == 1.0
    assert set(space.fixed) == {"NAME", "NEG"}
    assert "inferred" in space.table()


def test_space_file_naming_missing_knobs(tmp_path: Path, autoresearch_dir: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[params.NOT_THERE]\ntype = "int"\nlow = 1\nhigh = 2\n')
    with pytest.raises(SpaceError, match="does not define: \\['NOT_THERE'\\]"):
        space_for_script(autoresearch_dir / "train.py", f)


def test_bounds_that_exclude_the_default(tmp_path: Path, autoresearch_dir: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text('[params.DEPTH]\ntype = "int"\nlow = 10\nhigh = 20\n')
    with pytest.raises(SpaceError, match="default 8 lies outside"):
        space_for_script(autoresearch_dir / "train.py", f)


def test_script_without_knobs(tmp_path: Path) -> None:
    s = tmp_path / "t.py"
    s.write_text("def main():\n    LR = 1\n")
    with pytest.raises(SpaceError, match="no module-level ALL_CAPS"):
        space_for_script(s)


def test_bad_space_files(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text("[params.A\n")
    with pytest.raises(SpaceError, match="not valid TOML"):
        load_space_file(f)
    f.write_text('colour = "red"\n')
    with pytest.raises(SpaceError, match="unknown top-level keys"):
        load_space_file(f)
    with pytest.raises(SpaceError, match="does not exist"):
        load_space_file(tmp_path / "missing.toml")
    with pytest.raises(SpaceError, match="low .* must be below high"):
        Param("A", "int", low=5, high=1)
    with pytest.raises(SpaceError, match="log scale needs low > 0"):
        Param("A", "float", low=0.0, high=1.0, log=True)


def test_constraint_with_unknown_name() -> None:
    p = {"A": Param("A", "int", low=1, high=64, default=8)}
    from centaur_hpo.space import MultipleOf

    with pytest.raises(SpaceError, match="neither parameters nor \\[constants\\]"):
        SearchSpace(params=p, constraints=[MultipleOf("A", "B * 2")])


def test_builtin_file_parses_against_the_fixture(autoresearch_dir: Path) -> None:
    spec = load_space_file(builtin_path("autoresearch"))
    space = build_space(read_knobs(autoresearch_dir / "train.py"), spec)
    assert space.constants == {"MAX_SEQ_LEN": 2048}


def test_tune_subset_may_fix_a_constraint_target(autoresearch_dir: Path) -> None:
    """``--tune`` leaving out TOTAL_BATCH_SIZE keeps it fixed; the constraint no longer repairs it."""
    script = autoresearch_dir / "train.py"
    spec = load_space_file(builtin_path("autoresearch"))
    space = build_space(read_knobs(script), spec, tune=["DEPTH", "MATRIX_LR", "DEVICE_BATCH_SIZE"])
    assert space.names == ["DEPTH", "MATRIX_LR", "DEVICE_BATCH_SIZE"]
    assert "TOTAL_BATCH_SIZE" in space.fixed
    repaired = space.repair({"DEPTH": 8, "MATRIX_LR": 0.04, "DEVICE_BATCH_SIZE": 100})
    assert repaired["DEVICE_BATCH_SIZE"] == 128 and "TOTAL_BATCH_SIZE" not in repaired
