"""Parse what a training script prints: the summary block and the one-line JSON result.

Two protocols are read, and both may appear:

* the autoresearch summary block: a line ``---`` followed by ``key: value`` lines (the last
  block in the output wins);
* a one-line JSON object printed on stdout, ``{"val_bpb": 0.98, ...}``, optionally prefixed
  with ``centaur-result:``. The last such line wins and overrides the block key by key.

Failure markers are matched as whole lines (a line that is exactly ``FAIL``), never as a
substring, so a metric named ``FAILURES`` or a log line mentioning "fail" is no failure.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_KV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*:\s*(.+?)\s*$")
_PREFIX = "centaur-result:"


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_summary_block(stdout: str) -> dict[str, Any]:
    """The ``key: value`` lines after the last ``---`` line."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return {}
    out: dict[str, Any] = {}
    for line in lines[starts[-1] + 1 :]:
        m = _KV.match(line)
        if not m:
            if line.strip():
                break
            continue
        out[m.group(1)] = _number(m.group(2))
    return out


def parse_json_result(stdout: str) -> dict[str, Any]:
    """The last stdout line that is a JSON object (optionally prefixed ``centaur-result:``)."""
    for line in reversed(stdout.splitlines()):
        text = line.strip()
        if text.startswith(_PREFIX):
            text = text[len(_PREFIX) :].strip()
        if not (text.startswith("{") and text.endswith("}")):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return {str(k): v for k, v in obj.items() if isinstance(v, int | float | str | bool)}
    return {}


def parse_metrics(stdout: str) -> dict[str, Any]:
    """Both protocols merged; JSON keys override block keys."""
    return {**parse_summary_block(stdout), **parse_json_result(stdout)}


def has_fail_marker(text: str) -> bool:
    """True if some line is exactly ``FAIL`` (autoresearch's divergence marker)."""
    return any(line.strip() == "FAIL" for line in text.splitlines())


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
