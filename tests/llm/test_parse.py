"""Tolerant reading and strict validation of LLM replies (the rules in parse.py's module doc)."""

from __future__ import annotations

import pytest
from tests.llm.helpers import small_space

from centaur_hpo.llm.base import ParseError
from centaur_hpo.llm.parse import (
    parse_bounds,
    parse_config,
    parse_configs,
    parse_scores,
    round_half_up,
)

SPACE = small_space()
GOOD = '{"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}'


def test_prose_and_code_fences_around_the_json() -> None:
    text = (
        f"Sure! Based on the history I suggest:\n```json\n{GOOD}\n```\nThis should lower the loss."
    )
    config, notes = parse_config(text, SPACE)
    assert config == {"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}
    assert notes == []


def test_several_objects_the_last_valid_one_wins() -> None:
    text = (
        'First idea: {"LR": 0.5, "DEPTH": 5, "ACT": "gelu"} (too high).\n'
        f'Final answer: {GOOD}\nAnd an invalid afterthought: {{"LR": 0.01}}'
    )
    config, notes = parse_config(text, SPACE)
    assert config["LR"] == 0.02
    assert any("3 JSON objects" in n and "#2" in n for n in notes)


def test_lenient_json_is_read_and_noted() -> None:
    config, notes = parse_config("{'LR': 0.02, 'DEPTH': 5, 'ACT': 'gelu',}", SPACE)
    assert config["DEPTH"] == 5 and notes
    config, notes = parse_config(
        '{"LR": 0.02, // learning rate\n "DEPTH": 5, "ACT": "gelu",}', SPACE
    )
    assert config["LR"] == 0.02 and any("comments" in n for n in notes)


@pytest.mark.parametrize(("given", "want"), [(4.5, 5), (4.49, 4), (6.51, 7), ("5.5", 6), (5.0, 5)])
def test_integers_are_rounded_never_truncated(given: object, want: int) -> None:
    text = '{"LR": 0.02, "DEPTH": %s, "ACT": "gelu"}' % (
        f'"{given}"' if isinstance(given, str) else given
    )
    config, notes = parse_config(text, SPACE)
    assert config["DEPTH"] == want and isinstance(config["DEPTH"], int)
    if given != 5.0:
        assert notes


def test_round_half_up() -> None:
    assert [round_half_up(x) for x in (2.5, 3.5, -2.5, 2.4999, 0.5)] == [3, 4, -3, 2, 1]


def test_invalid_choice_is_rejected_not_mapped() -> None:
    for act in ('"GELU"', '"gelu2"', '"swish"', "1", "null"):
        with pytest.raises(ParseError, match="not one of the choices"):
            parse_config('{"LR": 0.02, "DEPTH": 5, "ACT": ' + act + "}", SPACE)


def test_out_of_range_rejected_unless_repair() -> None:
    text = '{"LR": 0.5, "DEPTH": 40, "ACT": "gelu"}'
    with pytest.raises(ParseError) as e:
        parse_config(text, SPACE)
    assert "LR: 0.5 is outside" in str(e.value) and "DEPTH: 40 is outside" in str(e.value)
    config, notes = parse_config(text, SPACE, repair=True)
    assert config == {"LR": 0.1, "DEPTH": 12, "ACT": "gelu"}
    assert len([n for n in notes if "clipped" in n]) == 2


def test_missing_unknown_and_misspelt_keys() -> None:
    with pytest.raises(ParseError, match=r"missing parameters \['ACT'\]"):
        parse_config('{"LR": 0.02, "DEPTH": 5}', SPACE)
    config, notes = parse_config('{"LR": 0.02, "DEPTH": 5}', SPACE, fill={"ACT": "relu"})
    assert config["ACT"] == "relu" and any("filled" in n for n in notes)
    config, notes = parse_config('{"lr": 0.02, "depth": 5, "ACT": "gelu", "WARMUP": 3}', SPACE)
    assert config["LR"] == 0.02 and any("WARMUP" in n for n in notes)
    with pytest.raises(ParseError, match="unknown parameters"):
        parse_config('{"LR": 0.02, "DEPTH": 5, "ACT": "gelu", "X": 1}', SPACE, unknown="reject")


def test_numbers_as_strings_and_bad_numbers() -> None:
    config, notes = parse_config('{"LR": "1e-2", "DEPTH": "2**2", "ACT": "gelu"}', SPACE)
    assert config["LR"] == 0.01 and config["DEPTH"] == 4 and len(notes) == 2
    for bad in ('"fast"', "NaN", "true", '"__import__(1)"'):
        with pytest.raises(ParseError, match="LR"):
            parse_config('{"LR": ' + bad + ', "DEPTH": 5, "ACT": "gelu"}', SPACE)


def test_no_json_at_all() -> None:
    with pytest.raises(ParseError, match="no JSON object"):
        parse_config("I would increase the learning rate a little.", SPACE)


def test_several_configurations() -> None:
    text = (
        '{"configs": [' + GOOD + ", " + GOOD + ', {"LR": 9, "DEPTH": 5, "ACT": "gelu"}, '
        '{"LR": 0.003, "DEPTH": 3, "ACT": "relu"}]}'
    )
    configs, notes = parse_configs(text, SPACE, 3)
    assert [c["LR"] for c in configs] == [0.02, 0.003]
    assert any("repeats" in n for n in notes) and any("rejected" in n for n in notes)
    configs, _ = parse_configs("[" + GOOD + "]", SPACE, 2)  # a bare array
    assert len(configs) == 1
    with pytest.raises(ParseError):
        parse_configs('{"configs": [{"LR": 9}]}', SPACE, 2)


def test_scores_and_bounds() -> None:
    assert parse_scores('blah {"scores": [1.5, "2", 3]}', 3)[0] == [1.5, 2.0, 3.0]
    assert parse_scores("[0.9, 1.1]", 2) == ([0.9, 1.1], ["scores read from a bare JSON array"])
    with pytest.raises(ParseError, match="expected 3 scores"):
        parse_scores('{"scores": [1, 2]}', 3)
    bounds, notes = parse_bounds('{"LR": [0.05, 0.002], "ACT": ["relu"]}', SPACE)
    assert bounds == {"LR": (0.002, 0.05)} and notes
    with pytest.raises(ParseError, match="outside"):
        parse_bounds('{"DEPTH": [1, 5]}', SPACE)
