"""Search spaces: what may vary, within which bounds, under which constraints.

A :class:`SearchSpace` is built from a script's ``ALL_CAPS`` knobs (see :mod:`centaur_hpo.script`)
and, where given, a TOML space file that states types, bounds, log scale and choices. Constraints
(power-of-two values, "X must be a multiple of Y * Z") are applied by :meth:`SearchSpace.repair`
*before* a configuration runs, so every optimizer is told exactly the values that ran.
"""

from __future__ import annotations

import ast
import math
import operator
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import optuna.distributions as od

ParamType = Literal["int", "float", "categorical", "bool"]
Config = dict[str, Any]


class SpaceError(ValueError):
    """A search space or configuration is invalid; the message says what to fix."""


@dataclass(frozen=True)
class Param:
    """One tunable hyperparameter.

    ``power_of_two`` restricts an int to powers of two inside ``[low, high]``; the optimizer may
    propose anything in the range and :meth:`SearchSpace.repair` snaps it (in log space) before
    the trial runs.
    """

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None
    default: Any = None
    power_of_two: bool = False
    inferred: str | None = None  # the inference rule that produced the bounds, if any

    def __post_init__(self) -> None:
        if self.type in ("int", "float"):
            if self.low is None or self.high is None:
                raise SpaceError(f"{self.name}: a {self.type} parameter needs 'low' and 'high'")
            if not self.low < self.high:
                raise SpaceError(f"{self.name}: low ({self.low}) must be below high ({self.high})")
            if self.log and self.low <= 0:
                raise SpaceError(f"{self.name}: log scale needs low > 0 (got {self.low})")
            if self.power_of_two:
                if self.type != "int":
                    raise SpaceError(f"{self.name}: power_of_two applies to int parameters only")
                if not self.powers_of_two():
                    raise SpaceError(
                        f"{self.name}: no power of two lies in [{self.low}, {self.high}]"
                    )
        elif self.type == "categorical":
            if not self.choices or len(self.choices) < 1:
                raise SpaceError(f"{self.name}: a categorical parameter needs 'choices'")
        elif self.type == "bool":
            object.__setattr__(self, "choices", (False, True))
        else:
            raise SpaceError(
                f"{self.name}: unknown type {self.type!r} (int, float, categorical, bool)"
            )

    def powers_of_two(self) -> list[int]:
        """The powers of two inside the bounds, ascending."""
        assert self.low is not None and self.high is not None
        lo = max(0, math.ceil(math.log2(max(self.low, 1))))
        hi = math.floor(math.log2(self.high)) if self.high >= 1 else -1
        return [2**k for k in range(lo, hi + 1) if self.low <= 2**k <= self.high]

    def values(self) -> list[Any] | None:
        """The finite set of values, for discrete parameters small enough to enumerate."""
        if self.type in ("categorical", "bool"):
            return list(self.choices or ())
        if self.power_of_two:
            return list(self.powers_of_two())
        return None

    def contains(self, value: Any) -> bool:
        if self.type in ("categorical", "bool"):
            return any(value == c and type(value) is type(c) for c in self.choices or ())
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and not float(value).is_integer():
            return False
        assert self.low is not None and self.high is not None
        return self.low <= value <= self.high

    def distribution(self) -> od.BaseDistribution:
        """The Optuna distribution an Optuna sampler proposes from."""
        if self.type in ("categorical", "bool"):
            return od.CategoricalDistribution(list(self.choices or ()))
        if self.type == "int":
            return od.IntDistribution(int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return od.FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.type in ("categorical", "bool"):
            return f"{self.type:<11} choices={list(self.choices or ())}"
        extra = " log" if self.log else ""
        extra += " power-of-two" if self.power_of_two else ""
        return f"{self.type:<11} [{_fmt(self.low)}, {_fmt(self.high)}]{extra}"

    def to_toml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type in ("int", "float"):
            out["low"], out["high"] = self.low, self.high
            if self.log:
                out["log"] = True
            if self.power_of_two:
                out["power_of_two"] = True
        elif self.type == "categorical":
            out["choices"] = list(self.choices or ())
        return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:g}"


@dataclass(frozen=True)
class MultipleOf:
    """``target`` must be a positive multiple of the value of the expression ``of``.

    Repair rounds ``target`` to the nearest multiple that lies inside its bounds (autoresearch's
    ``TOTAL_BATCH_SIZE % (DEVICE_BATCH_SIZE * MAX_SEQ_LEN) == 0``).
    """

    target: str
    of: str

    def names(self) -> set[str]:
        return {n.id for n in ast.walk(ast.parse(self.of, mode="eval")) if isinstance(n, ast.Name)}

    def describe(self) -> str:
        return f"{self.target} % ({self.of}) == 0"


@dataclass
class SearchSpace:
    """An ordered set of :class:`Param` plus constants and constraints.

    ``constants`` are fixed values that constraints may refer to (autoresearch's ``MAX_SEQ_LEN``
    lives in ``prepare.py``). ``fixed`` are script knobs that are not tuned but written as-is.
    """

    params: dict[str, Param]
    constants: dict[str, Any] = field(default_factory=dict)
    constraints: list[MultipleOf] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)
    metric: str = "val_bpb"
    direction: Literal["minimize", "maximize"] = "minimize"
    failure_value: float | None = None
    memory_cap: str | None = None
    trial_budget: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.params:
            raise SpaceError("the search space has no parameters to tune")
        known = set(self.params) | set(self.constants) | set(self.fixed)
        for c in self.constraints:
            # A constraint on a knob held fixed (``--tune`` left it out) cannot be repaired: it is
            # kept for the record and a violating configuration fails in the script, visibly.
            if c.target not in self.params and c.target not in self.fixed:
                raise SpaceError(
                    f"constraint {c.describe()!r}: {c.target} is neither a tuned parameter nor a "
                    "fixed knob of the script"
                )
            missing = c.names() - known
            if missing:
                raise SpaceError(
                    f"constraint {c.describe()!r} uses {sorted(missing)}, which are neither "
                    "parameters nor [constants]; add them under [constants] in the space file"
                )
        if self.direction not in ("minimize", "maximize"):
            raise SpaceError(f"direction must be 'minimize' or 'maximize', not {self.direction!r}")

    # -- views ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.params.values())

    def distributions(self) -> dict[str, od.BaseDistribution]:
        return {n: p.distribution() for n, p in self.params.items()}

    def default_config(self) -> Config:
        """The script's own values, repaired so they satisfy the constraints."""
        return self.repair({n: p.default for n, p in self.params.items()})

    def worse(self, a: float, b: float) -> bool:
        """True if value ``a`` is worse than ``b`` in this space's direction."""
        return a > b if self.direction == "minimize" else a < b

    def penalty(self) -> float:
        if self.failure_value is not None:
            return float(self.failure_value)
        return math.inf if self.direction == "minimize" else -math.inf

    # -- validation and repair ------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any]) -> list[str]:
        """Every reason ``config`` is not a valid, runnable configuration (empty if valid)."""
        errors = []
        for name in config:
            if name not in self.params:
                errors.append(f"unknown parameter {name!r}")
        for name, p in self.params.items():
            if name not in config:
                errors.append(f"{name}: missing")
            elif not p.contains(config[name]):
                errors.append(f"{name}: {config[name]!r} is outside {p.describe().strip()}")
        if not errors and self.repair(config) != dict(config):
            errors.append("violates a constraint: " + "; ".join(self.describe_constraints()))
        return errors

    def coerce(self, config: Mapping[str, Any]) -> Config:
        """Cast values to each parameter's type: ints are *rounded* (never truncated)."""
        out: Config = {}
        for name, value in config.items():
            p = self.params.get(name)
            if p is None:
                out[name] = value
            elif p.type == "int" and isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    out[name] = int(round(value))
                else:
                    out[name] = value
            elif (
                p.type == "float" and isinstance(value, int | float) and not isinstance(value, bool)
            ):
                out[name] = float(value)
            else:
                out[name] = value
        return out

    def repair(self, config: Mapping[str, Any]) -> Config:
        """Apply the space's constraints: clip to bounds, snap powers of two, fix multiples.

        Categorical values are never repaired: an invalid choice stays invalid so callers reject
        it instead of running it under another name.
        """
        out = self.coerce(config)
        for name, p in self.params.items():
            if name not in out or p.type not in ("int", "float"):
                continue
            v = out[name]
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            assert p.low is not None and p.high is not None
            v = min(max(v, p.low), p.high)
            if p.power_of_two:
                pows = p.powers_of_two()
                v = min(pows, key=lambda q: (abs(math.log2(q) - math.log2(max(v, 1e-12))), q))
            out[name] = int(round(v)) if p.type == "int" else float(v)
        for c in self.constraints:
            if c.target not in self.params or c.target not in out:
                continue
            env = {**self.constants, **self.fixed, **out}
            try:
                m = safe_eval(c.of, env)
            except (KeyError, SpaceError):
                continue
            if not isinstance(m, int | float) or m <= 0:
                continue
            p = self.params[c.target]
            assert p.low is not None and p.high is not None
            k = max(1, round(out[c.target] / m))
            lo_k, hi_k = math.ceil(p.low / m), math.floor(p.high / m)
            if hi_k >= max(lo_k, 1):
                k = min(max(k, max(lo_k, 1)), hi_k)
            value = k * m
            out[c.target] = int(value) if p.type == "int" else float(value)
        return out

    def describe_constraints(self) -> list[str]:
        out = [f"{p.name} is a power of two" for p in self if p.power_of_two]
        return out + [c.describe() for c in self.constraints]

    # -- encodings -----------------------------------------------------------------------------
    def to_unit(self, name: str, value: Any) -> float:
        """Map a numeric value into [0, 1] (log-warped where the parameter is log-scale)."""
        p = self.params[name]
        assert p.low is not None and p.high is not None
        if p.log:
            return (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
        return (value - p.low) / (p.high - p.low)

    def from_unit(self, name: str, u: float) -> float:
        p = self.params[name]
        assert p.low is not None and p.high is not None
        u = min(max(u, 0.0), 1.0)
        if p.log:
            return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
        return p.low + u * (p.high - p.low)

    # -- presentation --------------------------------------------------------------------------
    def table(self) -> str:
        """A human-readable listing for ``centaur space``."""
        width = max(len(n) for n in self.params)
        lines = [f"{'name':<{width}}  {'type / range':<44}  default"]
        for p in self:
            rule = f"   (inferred: {p.inferred})" if p.inferred else ""
            lines.append(f"{p.name:<{width}}  {p.describe():<44}  {p.default!r}{rule}")
        if self.fixed:
            lines.append("")
            lines.append("not tuned (kept as in the script): " + ", ".join(sorted(self.fixed)))
        if self.constants:
            lines.append("constants: " + ", ".join(f"{k}={v!r}" for k, v in self.constants.items()))
        cons = self.describe_constraints()
        if cons:
            lines.append("constraints (applied before a trial runs): " + "; ".join(cons))
        lines.append(f"metric: {self.metric} ({self.direction})")
        return "\n".join(lines)

    def subset(self, names: list[str]) -> SearchSpace:
        return replace(self, params={n: self.params[n] for n in names})


# -- inference rules ---------------------------------------------------------------------------
INFERENCE_RULES = """\
Where no space file gives a knob's bounds, they are inferred from its default value d:
  int d > 0        -> int   [max(1, d // 4), d * 4], log scale if d >= 16
  int d <= 0       -> not tuned (kept as in the script)
  float d > 0      -> float [d / 10, d * 10], log scale
  float d == 0     -> float [0, 1]
  float d < 0      -> not tuned
  bool             -> bool  (False, True)
  str              -> not tuned (give 'choices' in a space file to tune it)
Powers of two and divisibility are never inferred: state them in a space file."""


def infer_param(name: str, default: Any) -> Param | None:
    """A parameter with bounds inferred from its default, or None if it should not be tuned."""
    if isinstance(default, bool):
        return Param(name, "bool", default=default, inferred="bool")
    if isinstance(default, int):
        if default <= 0:
            return None
        low, high = max(1, default // 4), default * 4
        return Param(
            name,
            "int",
            low=low,
            high=high,
            log=default >= 16,
            default=default,
            inferred="int d -> [d//4, 4d]",
        )
    if isinstance(default, float):
        if default > 0:
            return Param(
                name,
                "float",
                low=default / 10,
                high=default * 10,
                log=True,
                default=default,
                inferred="float d -> [d/10, 10d] log",
            )
        if default == 0:
            return Param(
                name, "float", low=0.0, high=1.0, default=default, inferred="float 0 -> [0, 1]"
            )
    return None


# -- space files -------------------------------------------------------------------------------
_TOP_KEYS = {
    "params",
    "constants",
    "constraints",
    "metric",
    "direction",
    "failure_value",
    "memory_cap",
    "trial_budget",
    "include",
}
_PARAM_KEYS = {"type", "low", "high", "log", "choices", "power_of_two", "default"}


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Read and check a TOML space file; errors name the file and the key to fix."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"space file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"space file {path} is not valid TOML: {e}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SpaceError(
            f"{path}: unknown top-level keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})"
        )
    for name, spec in data.get("params", {}).items():
        if not isinstance(spec, dict):
            raise SpaceError(f"{path}: [params.{name}] must be a table")
        bad = set(spec) - _PARAM_KEYS
        if bad:
            raise SpaceError(f"{path}: [params.{name}] has unknown keys {sorted(bad)}")
    for c in data.get("constraints", []):
        if set(c) != {"multiple_of", "of"}:
            raise SpaceError(f"{path}: each [[constraints]] needs exactly 'multiple_of' and 'of'")
    return data


def build_space(
    knobs: Mapping[str, Any],
    spec: Mapping[str, Any] | None = None,
    *,
    source: str | None = None,
    tune: list[str] | None = None,
) -> SearchSpace:
    """Combine a script's knobs (name -> default) with an optional space-file spec.

    With a spec, exactly its ``[params]`` are tuned, each must exist in the script, and each
    default must lie inside its bounds. Without one, :data:`INFERENCE_RULES` decide.
    """
    spec = dict(spec or {})
    params: dict[str, Param] = {}
    where = f" ({source})" if source else ""
    if spec.get("params"):
        missing = [n for n in spec["params"] if n not in knobs]
        if missing:
            raise SpaceError(
                f"the space file{where} names knobs the script does not define: {missing}. "
                f"The script's knobs are: {sorted(knobs)}"
            )
        for name, s in spec["params"].items():
            default = s.get("default", knobs[name])
            kind = s.get("type")
            if kind is None:
                raise SpaceError(f"[params.{name}]{where} needs a 'type'")
            choices = tuple(s["choices"]) if "choices" in s else None
            p = Param(
                name,
                kind,
                low=s.get("low"),
                high=s.get("high"),
                log=bool(s.get("log", False)),
                choices=choices,
                default=default,
                power_of_two=bool(s.get("power_of_two", False)),
            )
            if not _default_ok(p):
                raise SpaceError(
                    f"{name}: the script's default {default!r} lies outside the space file's "
                    f"{p.describe().strip()}{where}; widen the bounds or change the default"
                )
            params[name] = p
        fixed = {k: v for k, v in knobs.items() if k not in params}
    else:
        fixed = {}
        for name, default in knobs.items():
            p = infer_param(name, default)
            if p is None:
                fixed[name] = default
            else:
                params[name] = p
    if tune:
        unknown = [n for n in tune if n not in params]
        if unknown:
            raise SpaceError(f"--tune names {unknown}, which are not in the space {sorted(params)}")
        fixed.update({n: params[n].default for n in params if n not in tune})
        params = {n: params[n] for n in tune}
    if not params:
        raise SpaceError(
            f"nothing to tune{where}: the script has no module-level ALL_CAPS = literal knobs "
            "that can be tuned. Define knobs like `LEARNING_RATE = 0.01` at the top level of the "
            "script, or give a space file with [params]."
        )
    constraints = [MultipleOf(c["multiple_of"], c["of"]) for c in spec.get("constraints", [])]
    constants = dict(spec.get("constants", {}))
    return SearchSpace(
        params=params,
        constants=constants,
        constraints=constraints,
        fixed=fixed,
        metric=spec.get("metric", "val_bpb"),
        direction=spec.get("direction", "minimize"),
        failure_value=spec.get("failure_value"),
        memory_cap=spec.get("memory_cap"),
        trial_budget=spec.get("trial_budget"),
        source=source,
    )


def _default_ok(p: Param) -> bool:
    d = p.default
    if p.type == "float" and isinstance(d, int) and not isinstance(d, bool):
        d = float(d)
    if p.type == "int" and isinstance(d, float) and d.is_integer():
        d = int(d)
    return p.contains(d)


# -- safe arithmetic ---------------------------------------------------------------------------
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_UNOPS = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def safe_eval(expr: str | ast.AST, env: Mapping[str, Any] | None = None) -> Any:
    """Evaluate a literal or simple arithmetic expression (``2**19``, ``64 * 1024``, names in env).

    Raises :class:`SpaceError` for anything else, so arbitrary code is never executed.
    """
    node = ast.parse(expr, mode="eval").body if isinstance(expr, str) else expr
    env = env or {}

    def ev(n: ast.AST) -> Any:
        if isinstance(n, ast.Constant):
            return n.value
        if isinstance(n, ast.Name):
            if n.id in env:
                return env[n.id]
            if n.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[n.id]
            raise KeyError(n.id)
        if isinstance(n, ast.BinOp) and type(n.op) in _BINOPS:
            left, right = ev(n.left), ev(n.right)
            if isinstance(n.op, ast.Pow) and abs(right) > 256:
                raise SpaceError("exponent too large")
            return _BINOPS[type(n.op)](left, right)
        if isinstance(n, ast.UnaryOp) and type(n.op) in _UNOPS:
            return _UNOPS[type(n.op)](ev(n.operand))
        if isinstance(n, ast.Tuple | ast.List):
            vals = [ev(e) for e in n.elts]
            return tuple(vals) if isinstance(n, ast.Tuple) else vals
        raise SpaceError(f"not a literal or simple arithmetic expression: {ast.unparse(n)}")

    return ev(node)
