"""Reply formats from the search space: every string the GBNF grammar generates is a valid
configuration, and each number rule generates exactly the values inside its range."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from tests.llm.helpers import autoresearch_space, mixed_space

from centaur_hpo.llm.grammar import (
    bounds_grammar,
    config_constraint,
    config_grammar,
    config_schema,
    float_decimals,
    int_rule,
    key_order,
    max_length,
    number_rule,
    parse_gbnf,
    sample_gbnf,
    scores_grammar,
)
from centaur_hpo.llm.parse import parse_bounds, parse_config, parse_configs, parse_scores


def expand(text: str) -> set[str]:
    """Every string a small, non-recursive grammar generates (exhaustive, for exactness tests)."""
    rules = parse_gbnf(text)

    def gen(node: tuple) -> set[str]:
        kind = node[0]
        if kind == "lit":
            return {node[1]}
        if kind == "cls":
            return {chr(c) for a, b in node[1] for c in range(ord(a), ord(b) + 1)}
        if kind == "ref":
            return gen(rules[node[1]])
        if kind == "seq":
            out = {""}
            for child in node[1]:
                out = {x + y for x in out for y in gen(child)}
            return out
        return set().union(*(gen(c) for c in node[1]))

    return gen(rules["root"])


@pytest.mark.parametrize(
    ("lo", "hi"), [(7, 123), (0, 9), (-12, 5), (-300, -7), (1, 1000), (98, 102)]
)
def test_int_rule_generates_exactly_the_range(lo: int, hi: int) -> None:
    got = expand(f"root ::= {int_rule(lo, hi)}\n")
    assert got == {str(i) for i in range(lo, hi + 1)}


@pytest.mark.parametrize(
    ("lo", "hi", "d"),
    [(-0.25, 0.3, 2), (0.0, 0.5, 3), (0.01, 2.0, 2), (0.0005, 0.05, 4), (1.5, 2.5, 1)],
)
def test_number_rule_generates_exactly_the_fixed_point_range(lo: float, hi: float, d: int) -> None:
    got = expand(f"root ::= {number_rule(lo, hi, d)}\n")
    scale = 10**d
    k_lo = int((Decimal(str(lo)) * scale).to_integral_value())
    k_hi = int((Decimal(str(hi)) * scale).to_integral_value())
    want = {f"{Decimal(k) / scale:.{d}f}" for k in range(k_lo, k_hi + 1)}
    assert got == want
    assert all(lo <= float(s) <= hi for s in got)
    assert "-0" + "." + "0" * d not in got  # zero is written once, without a sign


@pytest.mark.parametrize("make_space", [autoresearch_space, mixed_space])
def test_every_sampled_reply_is_a_valid_configuration(make_space) -> None:  # type: ignore[no-untyped-def]
    space = make_space()
    grammar = config_grammar(space)
    rng = random.Random(0)
    seen = {n: set() for n in space.names}
    for _ in range(400):
        text = sample_gbnf(grammar, rng)
        obj = json.loads(text)  # plain JSON, no repair needed
        assert list(obj) == key_order(space)
        config, notes = parse_config(text, space)
        assert notes == []  # nothing was rounded, clipped or snapped: valid by construction
        assert space.validate(config) == []
        for n, v in config.items():
            seen[n].add(v)
    # The grammar explores the space: every choice appears, numbers vary.
    for p in space:
        if p.values() is not None and len(p.values()) <= 6:
            assert seen[p.name] == set(p.values()), p.name
        else:
            assert len(seen[p.name]) > 5, p.name


def test_joint_constraint_encoded_in_the_grammar() -> None:
    space = autoresearch_space()
    order = key_order(space)
    # The constraint's parameters are written together, the target last.
    i = order.index("DEVICE_BATCH_SIZE")
    assert order[i + 1] == "TOTAL_BATCH_SIZE"
    rng = random.Random(1)
    for _ in range(200):
        c = json.loads(sample_gbnf(config_grammar(space), rng))
        assert c["TOTAL_BATCH_SIZE"] % (c["DEVICE_BATCH_SIZE"] * 2048) == 0


def test_float_decimals_rule() -> None:
    space = autoresearch_space()
    # log scale: about two significant digits at the low end
    assert float_decimals(space.params["UNEMBEDDING_LR"]) == 5  # low 0.0005 -> 0.00005 steps
    assert float_decimals(space.params["EMBEDDING_LR"]) == 3
    # linear: 0.5 % of the range
    assert float_decimals(space.params["WEIGHT_DECAY"]) == 3


def test_several_configs_scores_and_bounds_grammars() -> None:
    space = mixed_space()
    rng = random.Random(2)
    g3 = config_grammar(space, 3)
    for _ in range(50):
        configs, _ = parse_configs(sample_gbnf(g3, rng), space, 3)
        assert configs and all(space.validate(c) == [] for c in configs)
    gs = scores_grammar(4, -1.5, 2.0, 3)
    for _ in range(100):
        scores, _ = parse_scores(sample_gbnf(gs, rng), 4)
        assert len(scores) == 4 and all(-1.5 <= s <= 2.0 for s in scores)
    gb = bounds_grammar(space)
    for _ in range(50):
        bounds, _ = parse_bounds(sample_gbnf(gb, rng), space)
        for name, (lo, hi) in bounds.items():
            p = space.params[name]
            assert p.low <= lo <= hi <= p.high


def test_max_length_bounds_every_reply() -> None:
    space = autoresearch_space()
    constraint = config_constraint(space)
    assert constraint.max_chars == max_length(constraint.grammar)
    rng = random.Random(3)
    longest = max(len(sample_gbnf(constraint.grammar, rng)) for _ in range(300))
    assert longest <= constraint.max_chars < 2 * longest


def test_schema_states_ranges_and_choices() -> None:
    schema = config_schema(autoresearch_space())
    props = schema["properties"]
    assert props["DEPTH"] == {"type": "integer", "minimum": 4, "maximum": 24}
    assert props["HEAD_DIM"]["enum"] == [64, 128, 256]
    assert props["WINDOW_PATTERN"]["enum"][0] == "SSSL"
    assert schema["required"] == key_order(autoresearch_space())
    assert schema["additionalProperties"] is False


def test_llama_cpp_accepts_the_grammars() -> None:
    """llama.cpp's own parser reads every grammar we write (it crashes on ones it cannot)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    space = autoresearch_space()
    for text in (
        config_grammar(space),
        config_grammar(space, 3),
        bounds_grammar(space),
        scores_grammar(3, 0.9, 1.2, 4),
        config_grammar(mixed_space()),
    ):
        assert llama_cpp.LlamaGrammar.from_string(text, verbose=False) is not None
