"""Extraction and injection of ALL_CAPS knobs, on the 14 autoresearch knobs and edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from centaur_hpo.script import (
    ScriptError,
    config_diff,
    find_knobs,
    inject,
    read_knobs,
    write_trial_copy,
)

AUTORESEARCH_KNOBS = {
    "ASPECT_RATIO",
    "HEAD_DIM",
    "WINDOW_PATTERN",
    "TOTAL_BATCH_SIZE",
    "EMBEDDING_LR",
    "UNEMBEDDING_LR",
    "MATRIX_LR",
    "SCALAR_LR",
    "WEIGHT_DECAY",
    "WARMUP_RATIO",
    "WARMDOWN_RATIO",
    "FINAL_LR_FRAC",
    "DEPTH",
    "DEVICE_BATCH_SIZE",
}


def test_extracts_the_14_autoresearch_knobs(autoresearch_dir: Path) -> None:
    knobs = read_knobs(autoresearch_dir / "train.py")
    assert set(knobs) >= AUTORESEARCH_KNOBS
    assert knobs["TOTAL_BATCH_SIZE"] == 2**19  # an expression, evaluated safely
    assert knobs["WINDOW_PATTERN"] == "SSSL"
    assert "ADAM_BETAS" not in knobs  # tuples are not knobs


def test_round_trip_keeps_comments_and_formatting(autoresearch_dir: Path) -> None:
    source = (autoresearch_dir / "train.py").read_text()
    values = {
        "DEPTH": 12,
        "MATRIX_LR": 0.0123,
        "WINDOW_PATTERN": "LLLL",
        "TOTAL_BATCH_SIZE": 2**20,
        "WARMUP_RATIO": 0.0,
        "EMBEDDING_LR": 1.5,
    }
    new = inject(source, values)
    assert {k: v for k, v in find_knobs(new).items() if k in values} and all(
        find_knobs(new)[k].value == v for k, v in values.items()
    )
    # Untouched knobs keep their exact spelling, comments stay.
    assert "HEAD_DIM = 128          # target head dimension for attention" in new
    assert "DEPTH = 12               # number of transformer layers" in new
    assert 'WINDOW_PATTERN = "LLLL" # sliding window pattern' in new
    assert "WARMUP_RATIO = 0.0      # fraction" in new  # same value: not rewritten
    # Everything except the changed lines is identical.
    changed = [a for a, b in zip(source.splitlines(), new.splitlines(), strict=True) if a != b]
    assert len(changed) == 5


def test_only_module_level_multi_line_and_annotated() -> None:
    source = """
import os
LR = 3e-4  # comment
BATCH: int = 64
SIZES = (
    1 +
    2
)
NAME = "x"
lower = 5
def f():
    INNER = 3
if True:
    GUARDED = 1
FLAG = True
BIG = 2**19
NEG = -0.5
CALL = os.cpu_count()
"""
    knobs = find_knobs(source)
    assert set(knobs) == {"LR", "BATCH", "SIZES", "NAME", "FLAG", "BIG", "NEG"}
    assert knobs["SIZES"].value == 3
    new = inject(source, {"SIZES": 7, "BATCH": 128, "LR": 0.001, "FLAG": False})
    assert "SIZES = 7\nNAME" in new
    assert "BATCH: int = 128" in new
    assert "LR = 0.001  # comment" in new
    assert "FLAG = False" in new
    assert "INNER = 3" in new


def test_float_values_stay_floats_and_keep_precision() -> None:
    new = inject("LR = 0.5\nWD = 0.1\n", {"LR": 1.0, "WD": 0.123456789012345})
    assert find_knobs(new)["LR"].value == 1.0 and isinstance(find_knobs(new)["LR"].value, float)
    assert find_knobs(new)["WD"].value == 0.123456789012345


def test_inject_unknown_knob_is_an_error() -> None:
    with pytest.raises(ScriptError, match="no module-level knobs named"):
        inject("A = 1\n", {"B": 2})


def test_trial_copy_never_touches_the_user_file(autoresearch_dir: Path, tmp_path: Path) -> None:
    script = autoresearch_dir / "train.py"
    before = script.read_text()
    trial = tmp_path / "trial"
    copy = write_trial_copy(script, trial, {"DEPTH": 4})
    assert script.read_text() == before
    assert read_knobs(copy)["DEPTH"] == 4
    assert (trial / "prepare.py").is_symlink()  # siblings reachable unchanged
    assert (trial / "prepare.py").read_text() == (autoresearch_dir / "prepare.py").read_text()


def test_diff_shows_only_changes(autoresearch_dir: Path) -> None:
    diff = config_diff(autoresearch_dir / "train.py", {"DEPTH": 10, "HEAD_DIM": 128})
    assert "-DEPTH = 8" in diff and "+DEPTH = 10" in diff
    assert "HEAD_DIM" not in diff


def test_syntax_error_is_reported() -> None:
    with pytest.raises(ScriptError, match="not valid Python"):
        find_knobs("A = (\n")
