"""LLAMBO: the paper's target, the surrogate's mean/std, expected improvement, failures shown,
the prompt window, and real runs (cassette and embedded model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.llm.helpers import (
    CASSETTES,
    SMALL_TUNE,
    check_llm_records,
    open_result,
    run_study,
    small_space,
    trial_table,
    tune_method,
)

from centaur_hpo.llm import LLMClient, ReplayProvider, ScriptedProvider, llm_calls
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import SOURCE_KEY
from centaur_hpo.methods.llambo import DECISION_KEY, LlamboSampler, expected_improvement

A = '{"LR": 0.01, "DEPTH": 6, "ACT": "gelu"}'
B = '{"LR": 0.03, "DEPTH": 7, "ACT": "gelu"}'


def test_target_follows_the_paper() -> None:
    s = LlamboSampler(small_space(), llm=LLMClient(ScriptedProvider([])), alpha=-0.2)
    target, best, worst, spread = s.target([1.0, 2.0, 1.5])
    assert (best, worst, spread) == (1.0, 2.0, 1.0)
    assert target == pytest.approx(1.2)  # alpha=-0.2: 20 % of the range inside the best
    with pytest.raises(ValueError, match="alpha"):
        LlamboSampler(small_space(), llm=LLMClient(ScriptedProvider([])), alpha=2)


def test_expected_improvement() -> None:
    ei = expected_improvement(1.0, np.array([0.9, 1.1, 0.9]), np.array([0.01, 0.01, 0.5]), True)
    assert ei[0] == pytest.approx(0.1, abs=1e-4) and ei[1] < 1e-6 and ei[2] > ei[0]
    ei_max = expected_improvement(1.0, np.array([1.1]), np.array([0.01]), False)
    assert ei_max[0] == pytest.approx(0.1, abs=1e-4)


def test_candidates_surrogate_and_ei_pick(tmp_path: Path) -> None:
    # Trial 0 default, 1 random; trial 2: two candidates, two surrogate samples. The surrogate
    # predicts B much better with the same spread, so EI picks B (candidate 2).
    replies = [A, B, '{"scores": [0.30, 0.20]}', 'note: {"scores": [0.32, 0.21]}']
    provider = ScriptedProvider(replies)
    sampler = make_sampler(
        "llambo",
        small_space(),
        0,
        llm=LLMClient(provider),
        n_initial=1,
        n_candidates=2,
        n_surrogate=2,
    )
    study, summary = run_study(sampler, 3)
    assert isinstance(summary, dict), summary
    t2 = study.trials[2]
    assert t2.params == json.loads(B) and t2.system_attrs[SOURCE_KEY] == "llm"
    assert study.trials[1].system_attrs[SOURCE_KEY] == "random"
    decision = t2.system_attrs[DECISION_KEY]
    assert decision["chosen"] == 1 and decision["surrogate_samples"] == 2
    assert decision["mean"] == pytest.approx([0.31, 0.205])
    assert decision["std"] == pytest.approx([0.01, 0.005])
    assert decision["ei"][1] > decision["ei"][0]
    purposes = [r["purpose"] for r in llm_calls(study)]
    assert purposes == ["candidate", "candidate", "surrogate", "surrogate"]
    # The candidate prompt names the paper's target and the surrogate prompt lists candidates.
    assert "expect to reach loss =" in provider.calls[0][1]["content"]
    assert "candidate 2: " in provider.calls[2][1]["content"]


def test_failures_are_visible_and_the_window_is_bounded() -> None:
    space = small_space()

    calls = iter(range(1000))

    def reply(messages):  # type: ignore[no-untyped-def]
        if "Predict" in messages[1]["content"]:
            return '{"scores": [0.5, 0.6]}'
        k = next(calls)  # distinct configurations, every third one in the OOM region (DEPTH > 10)
        return json.dumps(
            {"LR": round(0.001 + 0.0007 * k, 4), "DEPTH": (5, 11, 7)[k % 3], "ACT": "gelu"}
        )

    provider = ScriptedProvider([reply] * 200)
    sampler = make_sampler(
        "llambo",
        space,
        0,
        llm=LLMClient(provider),
        n_initial=2,
        n_candidates=2,
        n_surrogate=1,
        n_best=3,
        n_spread=2,
        n_failed=2,
    )
    study, summary = run_study(sampler, 14)
    assert isinstance(summary, dict), summary
    failed = [t for t in study.trials if t.user_attrs.get("outcome") == "oom"]
    assert failed, "the scripted replies should have hit the OOM region"
    last = provider.calls[-1][1]["content"]
    assert "FAILED (oom" in last
    rows = [line for line in last.splitlines() if " -> " in line]
    assert len(rows) <= 3 + 2 + 2  # n_best + n_spread + n_failed, however long the history
    assert str(space.failure_value) not in " ".join(r.split(" -> ")[1] for r in rows)


def test_replays_the_recorded_cassette_exactly(tmp_path: Path) -> None:
    result = tune_method(
        "llambo", tmp_path, ReplayProvider(CASSETTES / "llambo.jsonl", on_mismatch="raise")
    )
    study = open_result(result)
    assert trial_table(study) == json.loads((CASSETTES / "llambo.trials.json").read_text())
    recs = check_llm_records(study, "llambo")
    assert {r["purpose"] for r in recs} == {"candidate", "surrogate"}
    # The limits in the prompt come from the cap the trials run under (the space's 76 GiB).
    assert (
        "memory cap 76 GiB per trial (an address-space limit)" in recs[0]["messages"][1]["content"]
    )


@pytest.mark.slow
def test_runs_with_the_embedded_model(tmp_path: Path) -> None:
    result = tune_method("llambo", tmp_path, "local", tune_params=SMALL_TUNE)
    study = open_result(result)
    recs = check_llm_records(study, "llambo", SMALL_TUNE)
    assert {r["purpose"] for r in recs} >= {"candidate"}
    decision = study.trials[2].system_attrs[DECISION_KEY]
    assert len(decision["candidates"]) >= 1 and result.n_trials == 3
