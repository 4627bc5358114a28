"""Read a training script's ``ALL_CAPS`` knobs and write a configuration into a copy of it.

Both directions work on the AST's source positions, so comments, formatting and multi-line
values elsewhere in the file survive untouched: only the value expression of each assignment
that changes is replaced.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from centaur_hpo.space import SpaceError, safe_eval

_CAPS = re.compile(r"^[A-Z][A-Z0-9_]*$")


class ScriptError(ValueError):
    """The training script cannot be read or written as asked; the message says what to fix."""


@dataclass(frozen=True)
class Knob:
    """A module-level ``NAME = value`` assignment: its value and where the value's source lies."""

    name: str
    value: Any
    lineno: int
    col: int
    end_lineno: int
    end_col: int
    source: str


def _read(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ScriptError(f"training script {path} does not exist or is not a file")
    return path.read_text()


def find_knobs(source: str, *, filename: str = "<script>") -> dict[str, Knob]:
    """All module-level ``ALL_CAPS = literal`` assignments, in file order.

    Assignments inside functions, classes, ``if`` blocks and loops are ignored: only the top
    level is a knob. A value that is not a literal or simple arithmetic of literals (``2**19``)
    is not a knob either. If a name is assigned twice, the last assignment wins, as at run time.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise ScriptError(f"{filename} is not valid Python: {e}") from None
    knobs: dict[str, Knob] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name) or not _CAPS.match(target.id):
            continue
        try:
            v = safe_eval(value)
        except (SpaceError, KeyError, ZeroDivisionError, TypeError, OverflowError):
            continue
        if not isinstance(v, bool | int | float | str):
            continue
        assert value.end_lineno is not None and value.end_col_offset is not None
        start, end = (value.lineno, value.col_offset), (value.end_lineno, value.end_col_offset)
        if (
            node.end_lineno is not None
            and node.end_col_offset is not None
            and ((node.end_lineno, node.end_col_offset) != end)
        ):
            # The value is wrapped in parentheses: replace them too, so a multi-line value
            # becomes one clean line instead of "(\n    7\n)".
            after = node.annotation if isinstance(node, ast.AnnAssign) else target
            opener = _first_paren(source, after, value)
            if opener is not None:
                start, end = opener, (node.end_lineno, node.end_col_offset)
        knobs[target.id] = Knob(
            target.id,
            v,
            start[0],
            start[1],
            end[0],
            end[1],
            ast.get_source_segment(source, value) or "",
        )
    return knobs


def _first_paren(source: str, after: ast.AST, value: ast.AST) -> tuple[int, int] | None:
    """(line, byte column) of the first "(" between the "=" and the value, if any."""
    lines = source.splitlines(keepends=True)
    line, col = after.end_lineno, after.end_col_offset  # type: ignore[attr-defined]
    seen_eq = False
    while line is not None and line <= value.lineno:  # type: ignore[attr-defined]
        raw = lines[line - 1].encode()
        stop = value.col_offset if line == value.lineno else len(raw)  # type: ignore[attr-defined]
        for i in range(col, stop):
            ch = chr(raw[i])
            if ch == "=":
                seen_eq = True
            elif ch == "(" and seen_eq:
                return line, i
            elif ch == "#":
                break
        line, col = line + 1, 0
    return None


def read_knobs(path: str | Path) -> dict[str, Any]:
    """Name -> value of the script's knobs."""
    return {k.name: k.value for k in find_knobs(_read(path), filename=str(path)).values()}


def format_value(value: Any) -> str:
    """Python source for a value: floats keep full precision and always look like floats."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".einfa") else text + ".0"
    return repr(value)


def inject(source: str, values: Mapping[str, Any], *, filename: str = "<script>") -> str:
    """Return ``source`` with each named knob's value expression replaced by ``values[name]``.

    Raises :class:`ScriptError` if a name is not a knob of the script.
    """
    knobs = find_knobs(source, filename=filename)
    missing = [n for n in values if n not in knobs]
    if missing:
        raise ScriptError(f"{filename} has no module-level knobs named {missing}")
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode()))
    data = source.encode()
    # Replace from the end so earlier offsets stay valid. AST columns are UTF-8 byte offsets.
    edits = sorted(
        (
            (
                offsets[k.lineno - 1] + k.col,
                offsets[k.end_lineno - 1] + k.end_col,
                k,
                values[k.name],
            )
            for k in knobs.values()
            if k.name in values and not _same(k.value, values[k.name])
        ),
        key=lambda e: e[0],
        reverse=True,
    )
    for start, end, knob, value in edits:
        text = format_value(value)
        if isinstance(value, str) and knob.source.startswith('"'):
            text = json.dumps(value)
        data = data[:start] + text.encode() + data[end:]
    return data.decode()


def _same(old: Any, new: Any) -> bool:
    """Unchanged values keep their original spelling (``2**19`` stays ``2**19``)."""
    return type(old) is type(new) and old == new


def write_trial_copy(
    script: str | Path,
    trial_dir: str | Path,
    values: Mapping[str, Any],
    *,
    exclude: tuple[str | Path, ...] = (),
) -> Path:
    """Make ``trial_dir`` a runnable copy of the script's folder with ``values`` written in.

    The script itself is copied (with the values injected); every sibling entry of its folder is
    linked, so ``import prepare`` and data files keep working and stay unchanged. The user's file
    is never written to. ``exclude`` lists folders not to link (the run directory itself).
    """
    script = Path(script).resolve()
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    source = _read(script)
    (trial_dir / script.name).write_text(inject(source, values, filename=str(script)))
    skip = {Path(e).resolve() for e in exclude}
    for entry in script.parent.iterdir():
        if entry.name in (script.name, ".git", "__pycache__") or entry.resolve() in skip:
            continue
        if any(s.is_relative_to(entry.resolve()) for s in skip) and entry.is_dir():
            # The run directory lives inside this folder: link its other children instead.
            continue
        link = trial_dir / entry.name
        if not link.exists() and not link.is_symlink():
            os.symlink(entry.resolve(), link)
    return trial_dir / script.name


def config_diff(script: str | Path, values: Mapping[str, Any]) -> str:
    """A unified diff of the script against the script with ``values`` applied."""
    source = _read(script)
    new = inject(source, values, filename=str(script))
    name = Path(script).name
    return "".join(
        difflib.unified_diff(
            source.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )
