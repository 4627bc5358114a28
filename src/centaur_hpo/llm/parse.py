"""Tolerant reading of LLM replies, strict validation of what they say.

Reading is tolerant because servers without a grammar wrap JSON in prose, code fences or several
drafts. Validation is strict because whatever passes runs as a trial and is told to an optimizer.

Reading rules (:func:`json_objects`):

1. Every top-level JSON object in the text is found by scanning for ``{`` and decoding from
   there, so prose and code fences around it do not matter.
2. An object that is not strict JSON is retried after removing ``//`` and ``#`` line comments
   and trailing commas, and then as a Python literal (single quotes, True/False/None). The
   note says which repair made it readable.
3. With several objects, validation runs from the **last** to the first and the last one that is
   valid is used (models put their final answer last); the note says which one and of how many.

Validation rules for a configuration (:func:`validate_config`):

* **keys**: exact names; otherwise a case-insensitive match if it is unambiguous (noted).
  Unknown keys are ignored and noted (``unknown="ignore"``, the default) or rejected
  (``unknown="reject"``). A missing parameter is rejected, unless ``fill`` supplies it (noted).
* **numbers**: JSON numbers, or strings holding a number or simple arithmetic (``"2**19"``,
  noted). NaN and infinity are rejected.
* **ints** are *rounded* to the nearest integer, halves away from zero, never truncated; a float
  given for an int is rounded and noted.
* **out of range**: rejected by default; with ``repair=True`` clipped to the bound and noted.
* **constraints** (power of two, multiple-of): values inside the range are snapped by
  :meth:`SearchSpace.repair` and every change is noted, so the configuration recorded is the one
  that runs.
* **categorical / bool**: the value must equal one of the choices (a string may spell a numeric
  choice, ``"4"`` for 4; ``"true"``/``"false"`` for a bool). Anything else is **rejected**, never
  mapped to another choice.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, TypeVar

from centaur_hpo.llm.base import ParseError
from centaur_hpo.space import Config, Param, SearchSpace, SpaceError, safe_eval

T = TypeVar("T")

_DECODER = json.JSONDecoder()
_LINE_COMMENT = re.compile(r"(?m)(^|[\s,{\[])(//|#)[^\n\"]*$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


# -- finding JSON ------------------------------------------------------------------------------
def _matching_brace(text: str, start: int) -> int | None:
    """Index just past the brace that closes the one at ``start`` (string-aware), if any."""
    depth = 0
    in_str: str | None = None
    i = start
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 2
                continue
            if ch == in_str:
                in_str = None
        elif ch in "\"'":
            in_str = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _lenient(chunk: str) -> tuple[Any, str] | None:
    cleaned = _TRAILING_COMMA.sub(r"\1", _LINE_COMMENT.sub(r"\1", chunk))
    if cleaned != chunk:
        try:
            return json.loads(cleaned), "comments/trailing commas removed"
        except json.JSONDecodeError:
            pass
    py = re.sub(
        r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", re.sub(r"\bnull\b", "None", cleaned))
    )
    try:
        value = ast.literal_eval(py)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value, "read as a Python literal"


def json_values(text: str, opening: str = "{") -> list[tuple[Any, str | None]]:
    """Every top-level JSON value starting with ``opening`` in ``text``, with a repair note."""
    found: list[tuple[Any, str | None]] = []
    i = 0
    while True:
        i = text.find(opening, i)
        if i < 0:
            return found
        try:
            value, end = _DECODER.raw_decode(text, i)
            found.append((value, None))
            i = end
            continue
        except json.JSONDecodeError:
            pass
        end = _matching_brace(text, i)
        if end is not None:
            result = _lenient(text[i:end])
            if result is not None:
                found.append(result)
                i = end
                continue
        i += 1


def json_objects(text: str) -> list[tuple[dict[str, Any], str | None]]:
    """Every top-level JSON object in ``text`` (rule 1 and 2 of the module doc)."""
    return [(v, note) for v, note in json_values(text, "{") if isinstance(v, dict)]


def pick_last_valid(
    text: str,
    check: Callable[[dict[str, Any]], T],
    what: str = "JSON object",
) -> tuple[T, list[str]]:
    """Apply ``check`` to the objects in ``text`` from the last one back; first success wins.

    ``check`` raises :class:`ParseError` for an invalid object. Returns its result and notes.
    """
    objects = json_objects(text)
    if not objects:
        raise ParseError(f"the reply contains no {what}")
    errors: list[str] = []
    for idx in range(len(objects) - 1, -1, -1):
        obj, repair_note = objects[idx]
        try:
            result = check(obj)
        except ParseError as e:
            errors.append(f"object {idx + 1}: {e}")
            continue
        notes = []
        if repair_note:
            notes.append(f"reply JSON {repair_note}")
        if len(objects) > 1:
            notes.append(
                f"reply held {len(objects)} JSON objects; used the last valid one (#{idx + 1})"
            )
        return result, notes
    if len(objects) == 1:
        raise ParseError(errors[0].removeprefix("object 1: "))
    raise ParseError(
        f"none of the {len(objects)} JSON objects is valid: " + "; ".join(reversed(errors))
    )


# -- values ------------------------------------------------------------------------------------
def round_half_up(x: float) -> int:
    """Nearest integer, halves away from zero (2.5 -> 3, -2.5 -> -3): never truncates."""
    return int(Decimal(repr(float(x))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_number(value: Any, name: str) -> tuple[float | int, str | None]:
    """A JSON number, or a string holding one or simple arithmetic; with a note if converted."""
    if isinstance(value, bool) or value is None:
        raise ParseError(f"{name}: {value!r} is not a number")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ParseError(f"{name}: {value!r} is not a finite number")
        return value, None
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            number: Any = (
                float(text) if re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?", text, re.I) else None
            )
            if number is None:
                number = safe_eval(text)
        except (ValueError, SpaceError, SyntaxError, KeyError, ZeroDivisionError, TypeError):
            raise ParseError(f"{name}: {value!r} is not a number") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ParseError(f"{name}: {value!r} is not a number")
        if not math.isfinite(number):
            raise ParseError(f"{name}: {value!r} is not a finite number")
        return number, f"{name}: string {value!r} read as {number!r}"
    raise ParseError(f"{name}: {value!r} is not a number")


def _choice(p: Param, value: Any) -> tuple[Any, str | None]:
    choices = list(p.choices or ())
    for c in choices:
        if value == c and type(value) is type(c):
            return c, None
    if p.type == "bool" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        v = value.strip().lower() == "true"
        return v, f"{p.name}: string {value!r} read as {v}"
    for c in choices:
        if isinstance(c, bool):
            continue
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(c, int | float) and numeric and value == c:
            return c, None
        if isinstance(c, int | float) and isinstance(value, str):
            try:
                if float(value) == c:
                    return c, f"{p.name}: string {value!r} read as {c!r}"
            except ValueError:
                pass
    raise ParseError(
        f"{p.name}: {value!r} is not one of the choices {choices} (rejected, not mapped)"
    )


def _key_map(
    space: SearchSpace, obj: Mapping[str, Any]
) -> tuple[dict[str, str], list[str], list[str]]:
    """Map reply keys to parameter names; returns mapping, notes, unknown keys."""
    lower: dict[str, list[str]] = {}
    for n in space.names:
        lower.setdefault(n.lower(), []).append(n)
    mapping: dict[str, str] = {}
    notes: list[str] = []
    unknown: list[str] = []
    for key in obj:
        if key in space.params:
            mapping[key] = key
            continue
        cands = lower.get(str(key).strip().lower(), [])
        if len(cands) == 1 and cands[0] not in obj:
            mapping[key] = cands[0]
            notes.append(f"key {key!r} read as {cands[0]}")
        else:
            unknown.append(key)
    taken: dict[str, str] = {}
    for key, name in mapping.items():
        if name in taken:
            raise ParseError(f"{name} is given twice (as {taken[name]!r} and {key!r})")
        taken[name] = key
    return mapping, notes, unknown


def validate_config(
    obj: Mapping[str, Any],
    space: SearchSpace,
    *,
    repair: bool = False,
    unknown: Literal["ignore", "reject"] = "ignore",
    fill: Mapping[str, Any] | None = None,
) -> tuple[Config, list[str]]:
    """One JSON object as a valid configuration, or :class:`ParseError` (rules in the module doc)."""
    if not isinstance(obj, Mapping):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}")
    mapping, notes, extra = _key_map(space, obj)
    if extra:
        if unknown == "reject":
            raise ParseError(f"unknown parameters {extra}; the parameters are {space.names}")
        notes.append(f"ignored unknown keys {extra}")
    given = {name: obj[key] for key, name in mapping.items()}
    missing = [n for n in space.names if n not in given]
    if missing:
        if fill is None or any(n not in fill for n in missing):
            raise ParseError(f"missing parameters {missing}")
        for n in missing:
            given[n] = fill[n]
        notes.append(f"filled missing {missing} from the reference configuration")
    config: Config = {}
    errors: list[str] = []
    for n in space.names:
        p = space.params[n]
        try:
            value, note = _check_value(p, given[n], repair)
        except ParseError as e:
            errors.append(str(e))
            continue
        if note:
            notes.append(note)
        config[n] = value
    if errors:
        raise ParseError("; ".join(errors))
    fixed = space.repair(config)
    for n in space.names:
        if fixed[n] != config[n]:
            notes.append(f"{n}: {config[n]!r} -> {fixed[n]!r} (space constraint)")
    bad = space.validate(fixed)
    if bad:
        raise ParseError("; ".join(bad))
    return fixed, notes


def _check_value(p: Param, value: Any, repair: bool) -> tuple[Any, str | None]:
    if p.type in ("categorical", "bool"):
        return _choice(p, value)
    number, note = to_number(value, p.name)
    notes = [note] if note else []
    assert p.low is not None and p.high is not None
    if p.type == "int":
        if not float(number).is_integer():
            rounded = round_half_up(number)
            notes.append(f"{p.name}: {number!r} rounded to {rounded}")
            number = rounded
        number = int(number)
    else:
        number = float(number)
    if not p.low <= number <= p.high:
        if not repair:
            raise ParseError(f"{p.name}: {number!r} is outside [{p.low:g}, {p.high:g}]")
        clipped = min(max(number, p.low), p.high)
        clipped = int(round(clipped)) if p.type == "int" else float(clipped)
        notes.append(f"{p.name}: {number!r} clipped to {clipped!r} (repair=True)")
        number = clipped
    return number, "; ".join(notes) or None


# -- whole replies -----------------------------------------------------------------------------
def parse_config(
    text: str,
    space: SearchSpace,
    *,
    repair: bool = False,
    unknown: Literal["ignore", "reject"] = "ignore",
    fill: Mapping[str, Any] | None = None,
) -> tuple[Config, list[str]]:
    """The configuration in a reply: ``(config, notes)`` or :class:`ParseError` with the reason."""

    def check(obj: dict[str, Any]) -> tuple[Config, list[str]]:
        return validate_config(obj, space, repair=repair, unknown=unknown, fill=fill)

    (config, notes), pick_notes = pick_last_valid(text, check, "JSON object with a configuration")
    return config, pick_notes + notes


def parse_configs(
    text: str,
    space: SearchSpace,
    n: int,
    *,
    repair: bool = False,
    unknown: Literal["ignore", "reject"] = "ignore",
) -> tuple[list[Config], list[str]]:
    """Up to ``n`` distinct valid configurations, in the reply's order.

    Accepts ``{"configs": [...]}``, a bare JSON array of objects, or several objects in the text.
    Invalid entries are skipped and noted; none valid raises :class:`ParseError`.
    """
    entries: list[Any] = []
    for value, _note in json_values(text, "{") + json_values(text, "["):
        if isinstance(value, dict) and isinstance(value.get("configs"), list):
            entries = value["configs"]
            break
    if not entries:
        arrays = [v for v, _ in json_values(text, "[") if isinstance(v, list)]
        entries = next((a for a in reversed(arrays) if a and isinstance(a[0], dict)), [])
    if not entries:
        entries = [obj for obj, _ in json_objects(text)]
    if not entries:
        raise ParseError("the reply contains no configurations")
    out: list[Config] = []
    notes: list[str] = []
    for i, entry in enumerate(entries):
        try:
            config, entry_notes = validate_config(entry, space, repair=repair, unknown=unknown)
        except ParseError as e:
            notes.append(f"configuration {i + 1} rejected: {e}")
            continue
        if config in out:
            notes.append(f"configuration {i + 1} repeats an earlier one; dropped")
            continue
        notes += [f"configuration {i + 1}: {x}" for x in entry_notes]
        out.append(config)
        if len(out) == n:
            break
    if not out:
        raise ParseError("no valid configuration in the reply: " + "; ".join(notes))
    return out, notes


def parse_scores(text: str, n: int) -> tuple[list[float], list[str]]:
    """``{"scores": [...]}`` with exactly ``n`` finite numbers (a bare array is accepted too)."""

    def check(obj: dict[str, Any]) -> list[float]:
        scores = obj.get("scores")
        if not isinstance(scores, list):
            raise ParseError('expected {"scores": [...]}')
        if len(scores) != n:
            raise ParseError(f"expected {n} scores, got {len(scores)}")
        return [float(to_number(s, f"score {i + 1}")[0]) for i, s in enumerate(scores)]

    try:
        return pick_last_valid(text, check, "scores object")
    except ParseError as first:
        arrays = [v for v, _ in json_values(text, "[") if isinstance(v, list) and len(v) == n]
        for arr in reversed(arrays):
            try:
                values = [float(to_number(s, f"score {i + 1}")[0]) for i, s in enumerate(arr)]
            except ParseError:
                continue
            return values, ["scores read from a bare JSON array"]
        raise first from None


def parse_bounds(text: str, space: SearchSpace) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """``{"NAME": [low, high], ...}`` for numeric parameters; each pair sorted and inside range.

    Parameters missing from the reply keep their full range (noted); a pair outside the range is
    rejected.
    """

    def check(obj: dict[str, Any]) -> tuple[dict[str, tuple[float, float]], list[str]]:
        mapping, notes, extra = _key_map(space, obj)
        if extra:
            notes.append(f"ignored unknown keys {extra}")
        out: dict[str, tuple[float, float]] = {}
        for key, name in mapping.items():
            p = space.params[name]
            if p.type not in ("int", "float"):
                notes.append(f"{name}: not numeric, bounds ignored")
                continue
            pair = obj[key]
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ParseError(f"{name}: expected [low, high], got {pair!r}")
            lo, _ = to_number(pair[0], name)
            hi, _ = to_number(pair[1], name)
            lo, hi = sorted((float(lo), float(hi)))
            assert p.low is not None and p.high is not None
            if lo < p.low or hi > p.high:
                raise ParseError(f"{name}: [{lo:g}, {hi:g}] is outside [{p.low:g}, {p.high:g}]")
            out[name] = (lo, hi)
        if not out:
            raise ParseError("no bounds for any numeric parameter")
        return out, notes

    (bounds, notes), pick_notes = pick_last_valid(text, check, "bounds object")
    return bounds, pick_notes + notes
