"""LLM cost accounting: LLM time excluded from the budget by default (as in the paper), included
on request, and LLM seconds and tokens reported apart from training time."""

from __future__ import annotations

import json
import time

from tests.llm.helpers import run_study, small_space

from centaur_hpo.llm import LLMClient, ScriptedProvider, llm_usage
from centaur_hpo.methods import make_sampler
from centaur_hpo.study import Budget


def slow_reply(messages):  # type: ignore[no-untyped-def]
    time.sleep(0.3)  # the LLM "thinks" for 0.3 s
    n = len(messages[1]["content"]) % 7
    return json.dumps({"LR": 0.005 + 0.01 * n, "DEPTH": 3 + n, "ACT": "gelu"})


def charged(include_llm: bool) -> tuple[list[float], dict]:  # type: ignore[type-arg]
    sampler = make_sampler(
        "llm_agent", small_space(), 0, llm=LLMClient(ScriptedProvider([slow_reply] * 5))
    )
    study, summary = run_study(sampler, 3, budget=Budget(n_trials=3, include_llm=include_llm))
    assert isinstance(summary, dict), summary
    return [t.user_attrs["time_charged"] for t in study.trials], llm_usage(study)


def test_llm_time_is_excluded_by_default_and_reported_apart() -> None:
    times, usage = charged(False)
    assert times == [1.0, 1.0, 1.0]  # simulated training time only
    assert usage["calls"] == 2 and usage["tokens_in"] > 0 and usage["tokens_out"] > 0


def test_llm_time_is_charged_when_asked() -> None:
    times, _ = charged(True)
    assert all(t >= 1.3 for t in times[1:])  # 1 s of training + 0.3 s of LLM each
    assert times[0] < min(times[1:])  # trial 0 (the default) made no LLM call
    assert "LLM time" in Budget(3600, include_llm=True).describe()
