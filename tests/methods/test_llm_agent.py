"""The LLM agent in the fixed space: prompt content, context windowing, repeats, and real runs
(replayed from a recorded cassette, and with the embedded model)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import optuna
import pytest
from tests.llm.helpers import (
    CASSETTES,
    METHOD_OPTIONS,
    SMALL_TUNE,
    check_llm_records,
    open_result,
    run_study,
    small_objective,
    small_space,
    trial_table,
    tune_method,
)

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.llm import LLMClient, ReplayProvider, ScriptedProvider, llm_calls
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import SOURCE_KEY
from centaur_hpo.methods.llm_agent import CALL_LINK_KEY, LLMAgentSampler
from centaur_hpo.study import Budget, StudyRunner


class SmallContext(ScriptedProvider):
    """A scripted model with a small context window, to exercise the history window."""

    @property
    def context_window(self) -> int:
        return 800


def counting_replies(n: int) -> list:  # type: ignore[type-arg]
    """Distinct valid configurations, DEPTH cycling through the OOM region (> 10) now and then."""
    return [
        json.dumps({"LR": round(0.002 + 0.003 * i, 4), "DEPTH": 3 + i % 10, "ACT": "gelu"})
        for i in range(n)
    ]


def test_prompt_states_limits_and_failures_and_fits_the_context() -> None:
    provider = SmallContext(counting_replies(30))
    sampler = make_sampler(
        "llm_agent",
        small_space(),
        0,
        llm=LLMClient(provider, max_tokens=100),
        hardware="1 GPU, memory cap 3 GiB (the cap the trials run under)",
        history=30,
    )
    assert isinstance(sampler, LLMAgentSampler)
    study, summary = run_study(sampler, 16)
    assert isinstance(summary, dict), summary
    prompts = [c[1]["content"] for c in provider.calls]
    assert all("memory cap 3 GiB" in p for p in prompts)
    assert "No trial has finished yet" not in prompts[0]  # trial 0 (the default) ran first
    assert any("FAILED (oom: CUDA out of memory (simulated))" in p for p in prompts)
    # The history is windowed to the context: the late prompt shows only part of it.
    shown, total = map(
        int, re.search(r"\((\d+) of (\d+) finished trials shown\)", prompts[-1]).groups()
    )
    assert total == 15 and 0 < shown < total
    assert all(sampler.llm.count_tokens(c) <= 800 - 100 - 64 for c in provider.calls)
    # The fixed prefix is identical in every prompt (cacheable), the history comes after it.
    assert all(p.startswith(sampler.prefix) for p in prompts)
    assert [t.system_attrs.get(SOURCE_KEY) for t in study.trials[1:]] == ["llm"] * 15


def test_a_repeated_configuration_is_re_asked_once() -> None:
    default = '{"LR": 0.01, "DEPTH": 4, "ACT": "relu"}'  # the default, which ran as trial 0
    provider = ScriptedProvider(
        [default, default, default, '{"LR": 0.03, "DEPTH": 4, "ACT": "relu"}']
    )
    sampler = make_sampler("llm_agent", small_space(), 0, llm=LLMClient(provider))
    study, _ = run_study(sampler, 3)
    recs = llm_calls(study)
    assert [r["status"] for r in recs][:2] == ["invalid", "ok"]
    assert "already ran as trial #0" in recs[0]["error"]
    assert any("repeats trial #0" in n for n in recs[1]["notes"])  # accepted after one re-ask


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="does not take the option.*history"):
        make_sampler("llm_agent", small_space(), 0, llm=LLMClient(ScriptedProvider([])), histroy=3)
    with pytest.raises(ValueError, match="centaur tune SCRIPT --method code_agent"):
        make_sampler("code_agent", small_space(), 0)


def test_replays_the_recorded_cassette_exactly(tmp_path: Path) -> None:
    cassette = CASSETTES / "llm_agent.jsonl"
    result = tune_method("llm_agent", tmp_path, ReplayProvider(cassette, on_mismatch="raise"))
    study = open_result(result)
    assert trial_table(study) == json.loads((CASSETTES / "llm_agent.trials.json").read_text())
    check_llm_records(study, "llm_agent")
    assert result.llm_usage and result.llm_usage["failed_calls"] == 0


@pytest.mark.slow
def test_runs_with_the_embedded_model_and_replays(tmp_path: Path) -> None:
    # One LLM trial after the default; repeats allowed, so exactly one call of the model.
    options = {**METHOD_OPTIONS["llm_agent"], "avoid_repeats": False}
    result = tune_method(
        "llm_agent", tmp_path, "local", tune_params=SMALL_TUNE, n_trials=2, method_options=options
    )
    study = open_result(result)
    recs = check_llm_records(study, "llm_agent", SMALL_TUNE)
    assert all(r["provider"] == "local" and r["tokens_in"] > 100 for r in recs)
    assert len(recs) == 1 and result.n_trials == 2 and result.best_value is not None
    again = tune_method(
        "llm_agent",
        tmp_path,
        None,
        replay=f"{result.storage}#{result.study_name}",
        study="replayed",
        tune_params=SMALL_TUNE,
        n_trials=2,
        method_options=options,
    )
    assert trial_table(open_result(again)) == trial_table(study)


@pytest.mark.slow
def test_runs_on_the_builtin_cpu_gpt_task(tmp_path: Path) -> None:
    """The built-in CPU task, a real (tiny) training run per trial, the embedded model."""
    from centaur_hpo.api import tune

    result = tune(
        task="cpu-gpt",
        method="llm_agent",
        n_trials=2,
        trial_budget=1,
        run_dir=tmp_path / "runs",
        method_options={"avoid_repeats": False},
        progress=lambda _s: None,
    )
    study = open_result(result)
    recs = llm_calls(study)
    assert [r["status"] for r in recs] == ["ok"] and recs[0]["provider"] == "local"
    # The prompt states the cap the trials run under (the task's 2 GiB address-space limit).
    assert (
        "memory cap 2 GiB per trial (an address-space limit)" in recs[0]["messages"][1]["content"]
    )
    trial = study.trials[1]
    assert trial.system_attrs[SOURCE_KEY] == "llm" and trial.params == recs[0]["parsed"]
    assert trial.user_attrs["outcome"] in ("ok", "oom", "diverged")  # it ran, whatever its fate
    assert result.llm_usage and result.llm_usage["tokens_in"] > 500


# -- parallel mode: one call proposes a batch ---------------------------------------------------
def batch_replies(start: int = 0) -> ScriptedProvider:
    """A model that answers any prompt with as many fresh configurations as it asks for."""
    counter = iter(range(start, 90))

    def reply(messages: list) -> str:  # type: ignore[type-arg]
        m = re.search(r"Propose (\d+) different configurations", messages[-1]["content"])
        configs = []
        for _ in range(int(m.group(1)) if m else 1):
            i = next(counter)
            configs.append({"LR": round(0.002 + 0.001 * i, 4), "DEPTH": 3 + i % 7, "ACT": "gelu"})
        return json.dumps({"configs": configs}) if m else json.dumps(configs[0])

    return ScriptedProvider([reply] * 200)


def slow_objective(config: dict, number: int):  # type: ignore[no-untyped-def,type-arg]
    """The small task, taking 0.1 s of real time so parallel trials overlap."""
    time.sleep(0.1)
    return small_objective(config, number)


def run_parallel(
    sampler: LLMAgentSampler, n_trials: int, n_jobs: int, storage: str | None = None
) -> optuna.Study:
    study = optuna.create_study(
        study_name="p", storage=storage, sampler=sampler, load_if_exists=True
    )
    StudyRunner(
        study=study,
        evaluator=FunctionEvaluator(small_space(), slow_objective, name="small"),
        budget=Budget(n_trials=n_trials),
        n_jobs=n_jobs,
        heartbeat_interval=60.0,
    ).run()
    return study


def served_from_calls(study: optuna.Study) -> dict[int, str]:
    """Each LLM trial's call id, after checking its params are the linked reply's entry."""
    ok = {r["call"]: r for r in llm_calls(study) if r["status"] == "ok"}
    out = {}
    for t in study.get_trials(deepcopy=False):
        if t.system_attrs.get(SOURCE_KEY) != "llm":
            continue
        link = t.system_attrs[CALL_LINK_KEY]
        rec = ok[link["call"]]
        parsed = rec["parsed"] if isinstance(rec["parsed"], list) else [rec["parsed"]]
        assert t.params == parsed[link["index"]] and rec["seq"] == link["seq"]
        assert rec["trial"] == link["trial"]
        out[t.number] = link["call"]
    return out


def test_parallel_trials_share_batched_proposals() -> None:
    provider = batch_replies()
    sampler = LLMAgentSampler(small_space(), LLMClient(provider))  # batch=0: automatic
    study = run_parallel(sampler, 10, n_jobs=3)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 10 and [t.system_attrs.get(SOURCE_KEY) for t in trials[1:]] == ["llm"] * 9
    calls = served_from_calls(study)
    assert len(calls) == 9 and len(set(calls.values())) < 9  # fewer calls than LLM trials
    assert len(provider.calls) == len(set(calls.values()))
    prompts = [c[-1]["content"] for c in provider.calls]
    batch_prompts = [p for p in prompts if "run in parallel" in p]
    assert batch_prompts and all("Running now (results pending" in p for p in batch_prompts)
    assert all(int(re.search(r"Propose (\d+)", p).group(1)) <= 4 for p in batch_prompts)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 10  # no repeats


def test_batch_one_asks_once_per_trial_even_in_parallel() -> None:
    provider = batch_replies()
    study = run_parallel(LLMAgentSampler(small_space(), LLMClient(provider), batch=1), 6, 2)
    calls = served_from_calls(study)
    assert len(calls) == 5 and len(set(calls.values())) == 5 == len(provider.calls)
    assert not any("configs" in c[-1]["content"] for c in provider.calls)


def test_queued_proposals_survive_a_restart_and_go_stale(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = batch_replies()
    study = run_parallel(LLMAgentSampler(small_space(), LLMClient(first), batch=3), 2, 1, storage)
    assert len(first.calls) == 1  # trial 1 asked for 3; 2 are queued in the study
    # A fresh sampler (a restarted worker) whose model has no replies: it serves the queue.
    dead = ScriptedProvider([])
    study = run_parallel(LLMAgentSampler(small_space(), LLMClient(dead), batch=3), 4, 1, storage)
    calls = served_from_calls(study)
    assert list(calls) == [1, 2, 3] and len(set(calls.values())) == 1 and not dead.calls
    # Staleness: after trial 4 asks again, two fixed trials finish; once 3 results came after
    # that call, its last queued configuration is dropped and trial 7 asks anew.
    again = batch_replies(start=20)
    sampler = LLMAgentSampler(small_space(), LLMClient(again), batch=3)
    study = run_parallel(sampler, 5, 1, storage)
    study.enqueue_trial({"LR": 0.05, "DEPTH": 5, "ACT": "relu"})
    study.enqueue_trial({"LR": 0.06, "DEPTH": 5, "ACT": "relu"})
    study = run_parallel(sampler, 8, 1, storage)
    calls = served_from_calls(study)
    assert calls[4] != calls[7] and len(again.calls) == 2
    assert [t.system_attrs[CALL_LINK_KEY]["index"] for t in study.trials[4:8:3]] == [0, 0]


def test_batch_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="batch=-1"):
        LLMAgentSampler(small_space(), LLMClient(ScriptedProvider([])), batch=-1)


@pytest.mark.slow
def test_embedded_model_proposes_a_batch_in_one_call(tmp_path: Path) -> None:
    """The real model, under the batch grammar: one call, two distinct valid configurations."""
    options = {**METHOD_OPTIONS["llm_agent"], "avoid_repeats": False, "batch": 2}
    result = tune_method(
        "llm_agent", tmp_path, "local", tune_params=SMALL_TUNE, n_trials=3, method_options=options
    )
    study = open_result(result)
    recs = check_llm_records(study, "llm_agent", SMALL_TUNE)
    assert [r["status"] for r in recs] == ["ok"] and len(recs[0]["parsed"]) == 2
    assert "Propose 2 different configurations" in recs[0]["messages"][-1]["content"]
    assert served_from_calls(study) == {1: recs[0]["call"], 2: recs[0]["call"]}
