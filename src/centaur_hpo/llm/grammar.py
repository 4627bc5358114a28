"""Reply formats generated from a search space: a GBNF grammar that encodes every range, and a
JSON schema for servers that take one.

Why a grammar: llama.cpp's JSON-schema mode ignores ``minimum``/``maximum`` (0/10 in-range replies
measured here), while a grammar that spells out each range gives valid replies every time.

The rules, per parameter type:

* **int** - a power-of-two or small set (at most :data:`MAX_LISTED` values) is a list of literal
  choices; otherwise a digit-level grammar that generates exactly the integers in ``[low, high]``
  (no leading zeros, no sign unless the range is negative).
* **float** - a *fixed-point* decimal with exactly ``d`` fraction digits, where the grammar
  generates exactly the decimals ``k / 10**d`` with ``low <= k / 10**d <= high`` (so every value
  is range-correct by construction). ``d`` is chosen by :func:`float_decimals`: about two
  significant digits at the low end of a log-scale range, 0.5 % of the range on a linear scale,
  enough to write the bounds themselves, and at most 8.
* **categorical / bool** - the JSON literals of the choices, nothing else.
* **constraints** - a ``MultipleOf`` constraint whose parameters all have small finite value sets
  (autoresearch's ``TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0``) is encoded
  jointly: the parameters are written next to each other and each choice of the divisor's
  parameters allows only the target values that satisfy the constraint. Other constraints are
  applied by :meth:`SearchSpace.repair` after parsing (and noted).

Keys come in a fixed order (:func:`key_order`) and a fixed layout ``{"A": 1, "B": 0.50}``, so a
reply is short and every reply to the same prompt prefix tokenizes alike.

The module also carries a tiny reader for the GBNF subset it writes (literals, character classes,
rule references, groups, alternation) so tests can draw random derivations and check that every
string the grammar can produce parses to a valid configuration.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from centaur_hpo.llm.base import Constraint
from centaur_hpo.space import Param, SearchSpace, SpaceError, safe_eval

MAX_LISTED = 16  # int parameters with at most this many values are written as a list of choices
MAX_JOINT = 256  # most value combinations a jointly encoded constraint may enumerate
MAX_DECIMALS = 8

Pattern = list[tuple[int, int]]  # one digit string: per position the allowed digit range


# -- numbers -----------------------------------------------------------------------------------
def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def decimals_of(x: float) -> int:
    """Fraction digits in the shortest decimal that round-trips ``x``."""
    exp = _dec(x).normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def float_decimals(p: Param) -> int:
    """Fraction digits of a float parameter's fixed-point form (the rule in the module doc)."""
    assert p.low is not None and p.high is not None
    resolution = p.low / 10 if p.log and p.low > 0 else (p.high - p.low) / 200
    d = math.ceil(-math.log10(resolution) - 1e-9) if resolution > 0 else MAX_DECIMALS
    d = max(d, decimals_of(p.low), decimals_of(p.high), 1)
    return min(d, MAX_DECIMALS)


def format_value(p: Param, value: Any) -> str:
    """A value as JSON text in the grammar's own form (floats in fixed point)."""
    if p.type == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{float(value):.{float_decimals(p)}f}"
    if p.type == "int" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(round(value)))
    return json.dumps(value)


def _equal_width(a: str, b: str) -> list[Pattern]:
    """Digit patterns covering exactly the equal-width strings from ``a`` to ``b`` (a <= b)."""
    if not a:
        return [[]]
    if a[0] == b[0]:
        return [[(int(a[0]), int(a[0]))] + rest for rest in _equal_width(a[1:], b[1:])]
    n = len(a) - 1
    lo, hi = int(a[0]), int(b[0])
    out: list[Pattern] = []
    full_low = a[1:] == "0" * n
    full_high = b[1:] == "9" * n
    mid_lo = lo if full_low else lo + 1
    mid_hi = hi if full_high else hi - 1
    if not full_low:
        out += [[(lo, lo)] + rest for rest in _equal_width(a[1:], "9" * n)]
    if mid_lo <= mid_hi:
        out.append([(mid_lo, mid_hi)] + [(0, 9)] * n)
    if not full_high:
        out += [[(hi, hi)] + rest for rest in _equal_width("0" * n, b[1:])]
    return out


def digit_patterns(lo: int, hi: int, min_width: int = 1) -> list[Pattern]:
    """Patterns for the non-negative integers in ``[lo, hi]``, zero-padded to ``min_width``.

    Numbers below ``10**min_width`` are written with exactly ``min_width`` digits (leading zeros);
    larger ones with their own digit count and no leading zero.
    """
    if lo > hi or lo < 0:
        return []
    out: list[Pattern] = []
    width = min_width
    start = lo
    while start <= hi:
        top = 10**width - 1
        end = min(hi, top)
        if start <= end:
            out += _equal_width(str(start).zfill(width), str(end).zfill(width))
        start = max(start, top + 1)
        width += 1
    return out


def _pattern_text(pattern: Pattern, point_at: int | None = None) -> str:
    """GBNF for one pattern; a '.' is inserted before position ``point_at`` (fixed point)."""
    parts: list[str] = []
    literal = ""
    for i, (a, b) in enumerate(pattern):
        if point_at is not None and i == point_at:
            literal += "."
        if a == b:
            literal += str(a)
            continue
        if literal:
            parts.append(_lit(literal))
            literal = ""
        parts.append(f"[{a}-{b}]" if b > a + 1 else f"[{a}{b}]")
    if literal:
        parts.append(_lit(literal))
    return " ".join(parts)


def _scaled_range_rule(lo: int, hi: int, decimals: int) -> str:
    """GBNF alternatives for the integers ``lo..hi`` written as ``k / 10**decimals``."""
    alts: list[str] = []
    width = decimals + 1
    point_at = None
    if decimals:
        point_at = 0  # placeholder; computed per pattern below
    if lo < 0:
        for pat in digit_patterns(max(1, -hi) if hi < 0 else 1, -lo, width):
            point_at = len(pat) - decimals if decimals else None
            alts.append('"-" ' + _pattern_text(pat, point_at))
    for pat in digit_patterns(max(lo, 0), hi, width) if hi >= 0 else []:
        point_at = len(pat) - decimals if decimals else None
        alts.append(_pattern_text(pat, point_at))
    if not alts:
        raise SpaceError(f"no number with {decimals} decimals lies in the range [{lo}, {hi}]")
    return " | ".join(alts)


def number_rule(low: float, high: float, decimals: int) -> str:
    """GBNF alternatives for the fixed-point decimals (``decimals`` digits) inside [low, high]."""
    scale = Decimal(10) ** decimals
    lo = int((_dec(low) * scale).to_integral_value(ROUND_CEILING))
    hi = int((_dec(high) * scale).to_integral_value(ROUND_FLOOR))
    return _scaled_range_rule(lo, hi, decimals)


def int_rule(low: int, high: int) -> str:
    return _scaled_range_rule(int(low), int(high), 0)


def _lit(text: str) -> str:
    """A GBNF string literal."""
    esc = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{esc}"'


# -- the space's grammar -----------------------------------------------------------------------
@dataclass
class _Joint:
    """A constraint encoded jointly: ``names`` in order (target last) and the allowed tuples."""

    names: list[str]
    combos: list[tuple[Any, ...]]


def _finite_values(p: Param) -> list[Any] | None:
    values = p.values()
    if values is None and p.type == "int":
        assert p.low is not None and p.high is not None
        if p.high - p.low + 1 <= MAX_LISTED:
            values = list(range(int(p.low), int(p.high) + 1))
    return values


def _joint_groups(space: SearchSpace) -> list[_Joint]:
    groups: list[_Joint] = []
    used: set[str] = set()
    for c in space.constraints:
        names = [n for n in space.names if n in c.names() or n == c.target]
        names = [n for n in names if n != c.target] + [c.target]
        if used & set(names):
            continue
        value_lists = [_finite_values(space.params[n]) for n in names]
        if any(v is None for v in value_lists):
            continue
        if math.prod(len(v) for v in value_lists if v is not None) > MAX_JOINT:
            continue
        combos = []
        for combo in itertools.product(*value_lists):  # type: ignore[arg-type]
            env = {**space.constants, **space.fixed, **dict(zip(names, combo, strict=True))}
            try:
                m = safe_eval(c.of, env)
            except (KeyError, SpaceError, ZeroDivisionError):
                combos = []
                break
            t = combo[-1]
            if isinstance(m, int | float) and m > 0 and t / m >= 1 and float(t / m).is_integer():
                combos.append(combo)
        if combos:
            groups.append(_Joint(names, combos))
            used |= set(names)
    return groups


def key_order(space: SearchSpace) -> list[str]:
    """The order keys appear in replies: the space's order, jointly encoded groups kept together."""
    order: list[str] = []
    groups = {n: g for g in _joint_groups(space) for n in g.names}
    for n in space.names:
        if n in order:
            continue
        order += groups[n].names if n in groups else [n]
    return order


def _value_rule(p: Param) -> str:
    if p.type in ("categorical", "bool"):
        return " | ".join(_lit(json.dumps(c)) for c in p.choices or ())
    values = _finite_values(p)
    if values is not None:
        return " | ".join(_lit(str(v)) for v in values)
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return int_rule(int(p.low), int(p.high))
    return number_rule(p.low, p.high, float_decimals(p))


def _rule_name(prefix: str, i: int) -> str:
    return f"{prefix}{i}"


def config_rules(space: SearchSpace, root: str = "config") -> list[str]:
    """GBNF rules defining ``root`` as one JSON object holding a valid configuration."""
    rules: list[str] = []
    groups = {g.names[0]: g for g in _joint_groups(space)}
    seq: list[str] = []
    first = True
    done: set[str] = set()
    for n in key_order(space):
        if n in done:
            continue
        sep = "" if first else ", "
        first = False
        if n in groups:
            g = groups[n]
            alts = []
            for combo in g.combos:
                kv = ", ".join(
                    f"{json.dumps(k)}: {format_value(space.params[k], v)}"
                    for k, v in zip(g.names, combo, strict=True)
                )
                alts.append(_lit(sep + kv))
            name = _rule_name("joint", len(rules))
            rules.append(f"{name} ::= " + " | ".join(alts) + f"  # {' / '.join(g.names)}")
            seq.append(name)
            done |= set(g.names)
            continue
        p = space.params[n]
        name = _rule_name("value", len(rules))
        rules.append(f"{name} ::= {_value_rule(p)}  # {n}: {p.describe().strip()}")
        seq += [_lit(sep + json.dumps(n) + ": "), name]
        done.add(n)
    body = " ".join([_lit("{")] + seq + [_lit("}")])
    return [f"{root} ::= {body}"] + rules


def config_grammar(space: SearchSpace, n: int = 1) -> str:
    """GBNF whose every string is one valid configuration, or ``{"configs": [...]}`` with n."""
    if n == 1:
        return "\n".join(["root ::= config"] + config_rules(space)) + "\n"
    items = ' ", " '.join(["config"] * n)
    root = f'root ::= "{{\\"configs\\": [" {items} "]}}"'
    return "\n".join([root] + config_rules(space)) + "\n"


def scores_grammar(n: int, low: float, high: float, decimals: int) -> str:
    """GBNF for ``{"scores": [s1, ..., sn]}`` with each score a fixed-point decimal in range."""
    items = ' ", " '.join(["score"] * n)
    return (
        f'root ::= "{{\\"scores\\": [" {items} "]}}"\n'
        f"score ::= {number_rule(low, high, decimals)}\n"
    )


def bounds_grammar(space: SearchSpace) -> str:
    """GBNF for ``{"NAME": [low, high], ...}`` over the numeric parameters (each inside range)."""
    seq: list[str] = []
    rules: list[str] = []
    names = [n for n in key_order(space) if space.params[n].type in ("int", "float")]
    for i, n in enumerate(names):
        sep = "" if i == 0 else ", "
        rule = f"value{len(rules)}"
        rules.append(f"{rule} ::= {_value_rule(space.params[n])}  # {n}")
        seq += [_lit(f"{sep}{json.dumps(n)}: ["), rule, _lit(", "), rule, _lit("]")]
    root = "root ::= " + " ".join([_lit("{")] + seq + [_lit("}")])
    return "\n".join([root] + rules) + "\n"


# -- JSON schemas ------------------------------------------------------------------------------
def param_schema(p: Param) -> dict[str, Any]:
    if p.type == "bool":
        return {"type": "boolean"}
    if p.type == "categorical":
        return {"enum": list(p.choices or ())}
    values = p.values()
    if p.type == "int" and values is not None:
        return {"type": "integer", "enum": values}
    kind = "integer" if p.type == "int" else "number"
    lo: Any = int(p.low) if p.type == "int" else p.low  # type: ignore[arg-type]
    hi: Any = int(p.high) if p.type == "int" else p.high  # type: ignore[arg-type]
    return {"type": kind, "minimum": lo, "maximum": hi}


def config_schema(space: SearchSpace, n: int = 1) -> dict[str, Any]:
    """JSON schema of one configuration (or of ``{"configs": [...]}`` holding n of them)."""
    order = key_order(space)
    obj = {
        "type": "object",
        "properties": {k: param_schema(space.params[k]) for k in order},
        "required": order,
        "additionalProperties": False,
    }
    if n == 1:
        return obj
    return {
        "type": "object",
        "properties": {"configs": {"type": "array", "items": obj, "minItems": n, "maxItems": n}},
        "required": ["configs"],
        "additionalProperties": False,
    }


def config_constraint(space: SearchSpace, n: int = 1) -> Constraint:
    grammar = config_grammar(space, n)
    return Constraint(
        name="config" if n == 1 else f"configs[{n}]",
        grammar=grammar,
        schema=config_schema(space, n),
        max_chars=max_length(grammar),
    )


def scores_constraint(n: int, low: float, high: float, decimals: int) -> Constraint:
    grammar = scores_grammar(n, low, high, decimals)
    schema = {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "items": {"type": "number", "minimum": low, "maximum": high},
                "minItems": n,
                "maxItems": n,
            }
        },
        "required": ["scores"],
        "additionalProperties": False,
    }
    return Constraint(
        name=f"scores[{n}]", grammar=grammar, schema=schema, max_chars=max_length(grammar)
    )


def bounds_constraint(space: SearchSpace) -> Constraint:
    grammar = bounds_grammar(space)
    props = {}
    for n in key_order(space):
        p = space.params[n]
        if p.type in ("int", "float"):
            item = param_schema(p)
            props[n] = {"type": "array", "items": item, "minItems": 2, "maxItems": 2}
    schema = {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
    return Constraint(name="bounds", grammar=grammar, schema=schema, max_chars=max_length(grammar))


# -- reading the GBNF subset written above -----------------------------------------------------
_TOKEN = re.compile(
    r'\s*(?:(?P<lit>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<name>[A-Za-z0-9-]+)'
    r"|(?P<op>[|()]))"
)

Node = tuple  # ("lit", text) | ("cls", [(a, b)]) | ("ref", name) | ("seq", [..]) | ("alt", [..])


def _unescape(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _class_ranges(body: str) -> list[tuple[str, str]]:
    chars = _unescape(body)
    ranges, i = [], 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            ranges.append((chars[i], chars[i + 2]))
            i += 3
        else:
            ranges.append((chars[i], chars[i]))
            i += 1
    return ranges


def parse_gbnf(text: str) -> dict[str, Node]:
    """Rules of a grammar in the subset this module writes (raises ValueError otherwise)."""
    rules: dict[str, Node] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, body = line.partition("::=")
        if not sep:
            raise ValueError(f"not a rule: {line!r}")
        tokens = []
        pos = 0
        body = body.strip()
        while pos < len(body):
            if body[pos:].lstrip().startswith("#") or not body[pos:].strip():
                break
            m = _TOKEN.match(body, pos)
            if not m:
                raise ValueError(f"cannot read {body[pos:]!r} in rule {name.strip()}")
            tokens.append(m)
            pos = m.end()
        node, rest = _parse_alt(tokens, 0)
        if rest != len(tokens):
            raise ValueError(f"unbalanced rule {name.strip()}")
        rules[name.strip()] = node
    for node in rules.values():
        _check_refs(node, rules)
    if "root" not in rules:
        raise ValueError("the grammar has no root rule")
    return rules


def _check_refs(node: Node, rules: dict[str, Node]) -> None:
    kind = node[0]
    if kind == "ref" and node[1] not in rules:
        raise ValueError(f"undefined rule {node[1]}")
    if kind in ("seq", "alt"):
        for child in node[1]:
            _check_refs(child, rules)


def _parse_alt(tokens: list[re.Match[str]], i: int) -> tuple[Node, int]:
    alts = []
    seq: list[Node] = []
    while i < len(tokens):
        m = tokens[i]
        if m.group("op") == "|":
            alts.append(("seq", seq))
            seq = []
            i += 1
        elif m.group("op") == ")":
            break
        elif m.group("op") == "(":
            node, i = _parse_alt(tokens, i + 1)
            if i >= len(tokens) or tokens[i].group("op") != ")":
                raise ValueError("missing )")
            seq.append(node)
            i += 1
        elif m.group("lit") is not None:
            seq.append(("lit", _unescape(m.group("lit")[1:-1])))
            i += 1
        elif m.group("cls") is not None:
            seq.append(("cls", _class_ranges(m.group("cls")[1:-1])))
            i += 1
        else:
            seq.append(("ref", m.group("name")))
            i += 1
    alts.append(("seq", seq))
    return ("alt", alts), i


def sample_gbnf(text: str | dict[str, Node], rng: random.Random, rule: str = "root") -> str:
    """One random string the grammar generates (every alternative and character equally likely)."""
    rules = parse_gbnf(text) if isinstance(text, str) else text

    def gen(node: Node) -> str:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "cls":
            a, b = rng.choice(node[1])
            return chr(rng.randint(ord(a), ord(b)))
        if kind == "ref":
            return gen(rules[node[1]])
        if kind == "seq":
            return "".join(gen(c) for c in node[1])
        return gen(rng.choice(node[1]))

    return gen(rules[rule])


def max_length(text: str | dict[str, Node], rule: str = "root") -> int:
    """Length of the longest string the (non-recursive) grammar generates."""
    rules = parse_gbnf(text) if isinstance(text, str) else text

    def size(node: Node) -> int:
        kind = node[0]
        if kind == "lit":
            return len(node[1])
        if kind == "cls":
            return 1
        if kind == "ref":
            return size(rules[node[1]])
        if kind == "seq":
            return sum(size(c) for c in node[1])
        return max((size(c) for c in node[1]), default=0)

    return size(rules[rule])
