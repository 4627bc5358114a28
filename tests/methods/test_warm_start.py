"""LLM warm start: the LLM's first configurations, then a classical refiner started from them."""

from __future__ import annotations

import json
from pathlib import Path

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

from centaur_hpo.llm import LLMClient, ReplayProvider, ScriptedProvider, TransportError, llm_calls
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import SOURCE_KEY

THREE = (
    '{"configs": [{"LR": 0.01, "DEPTH": 6, "ACT": "gelu"}, {"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}, '
    '{"LR": 0.003, "DEPTH": 8, "ACT": "relu"}]}'
)


def test_llm_configurations_first_then_cmaes_from_the_best() -> None:
    provider = ScriptedProvider([THREE, '{"LR": [0.005, 0.03], "DEPTH": [4, 8]}'])
    sampler = make_sampler(
        "llm_warm_start", small_space(), 0, llm=LLMClient(provider), n_warm=3, ask_bounds=True
    )
    study, summary = run_study(sampler, 7)
    assert isinstance(summary, dict), summary
    sources = [t.system_attrs.get(SOURCE_KEY) for t in study.trials]
    assert sources[1:4] == ["llm"] * 3 and sources[4:] == ["cmaes"] * 3
    assert [t.params for t in study.trials[1:4]] == json.loads(THREE)["configs"]
    # One call for the configurations, one for the bounds; both recorded for trial 1.
    recs = llm_calls(study)
    assert [(r["purpose"], r["trial"]) for r in recs] == [("warm_start", 1), ("bounds", 1)]
    state = sampler.state
    assert state["x0"] == {"LR": 0.01, "DEPTH": 6, "ACT": "gelu"}  # the best warm-start trial
    assert 0.05 <= state["sigma0"] <= 0.3 and state["bounds"]["DEPTH"] == [4.0, 8.0]


def test_without_fallback_a_dead_llm_stops_the_study() -> None:
    client = LLMClient(
        ScriptedProvider([TransportError("down")] * 20), retries=1, max_failed_calls=2
    )
    study, stopped = run_study(make_sampler("llm_warm_start", small_space(), 0, llm=client), 5)
    assert isinstance(stopped, str) and "2 consecutive calls" in stopped
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]


def test_fallback_goes_to_the_refiner_and_is_recorded() -> None:
    client = LLMClient(ScriptedProvider([TransportError("down")] * 20), retries=0)
    sampler = make_sampler("llm_warm_start", small_space(), 0, llm=client, fallback=True)
    study, summary = run_study(sampler, 4)
    assert isinstance(summary, dict), summary
    sources = [t.system_attrs.get(SOURCE_KEY) for t in study.trials]
    assert sources[1] == "fallback:call_failed" and sources[2:] == ["cmaes", "cmaes"]


def test_replays_the_recorded_cassette_exactly(tmp_path: Path) -> None:
    cassette = CASSETTES / "llm_warm_start.jsonl"
    result = tune_method("llm_warm_start", tmp_path, ReplayProvider(cassette, on_mismatch="raise"))
    study = open_result(result)
    assert trial_table(study) == json.loads((CASSETTES / "llm_warm_start.trials.json").read_text())
    check_llm_records(study, "llm_warm_start")


@pytest.mark.slow
def test_runs_with_the_embedded_model(tmp_path: Path) -> None:
    result = tune_method("llm_warm_start", tmp_path, "local", tune_params=SMALL_TUNE)
    study = open_result(result)
    check_llm_records(study, "llm_warm_start", SMALL_TUNE)
    sources = [t.system_attrs.get(SOURCE_KEY) for t in study.trials]
    assert sources[1] == "llm" and sources[-1] == "cmaes" and result.n_trials == 4
