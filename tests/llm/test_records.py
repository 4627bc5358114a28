"""Per-call provenance stored in the study, cassette export, and exact replay without an LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.llm.helpers import run_study

from centaur_hpo.llm import (
    LLMClient,
    ReplayProvider,
    ScriptedProvider,
    TransportError,
    export_cassette,
    llm_calls,
    llm_usage,
)
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import SOURCE_KEY

REPLIES = [
    '{"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}',
    TransportError("HTTP 503 from scripted"),
    'Here you go: {"LR": 0.004, "DEPTH": 8, "ACT": "relu"}',
    '{"LR": 0.0123, "DEPTH": 11, "ACT": "gelu"}',  # DEPTH 11 runs out of memory (simulated)
    "no idea",
    '{"LR": 0.009, "DEPTH": 6.5, "ACT": "gelu"}',  # rounded to 7
]
FIELDS = {
    "seq",
    "call",
    "attempt",
    "trial",
    "method",
    "purpose",
    "provider",
    "model",
    "endpoint",
    "messages",
    "prompt_hash",
    "status",
    "time",
}


def recorded_study(tmp_path: Path):  # type: ignore[no-untyped-def]
    client = LLMClient(ScriptedProvider(list(REPLIES), model="script-1"))
    sampler = make_sampler("llm_agent", _space(), 0, llm=client)
    return run_study(sampler, 5, storage=f"sqlite:///{tmp_path / 'rec.db'}", name="rec")


def _space():  # type: ignore[no-untyped-def]
    from tests.llm.helpers import small_space

    return small_space()


def test_every_call_is_recorded_with_its_provenance(tmp_path: Path) -> None:
    study, summary = recorded_study(tmp_path)
    assert isinstance(summary, dict), summary
    recs = llm_calls(study)
    assert [r["status"] for r in recs] == ["ok", "transport_error", "ok", "ok", "invalid", "ok"]
    assert [r["seq"] for r in recs] == list(range(6))
    for r in recs:
        assert set(r) >= FIELDS, FIELDS - set(r)
        assert (
            r["method"] == "llm_agent" and r["provider"] == "scripted" and r["model"] == "script-1"
        )
        assert r["purpose"] == "propose" and r["messages"][0]["role"] == "system"
    assert [r["trial"] for r in recs] == [1, 2, 2, 3, 4, 4]
    ok = [r for r in recs if r["status"] == "ok"]
    assert all(r["tokens_in"] > 0 and r["tokens_out"] > 0 and "latency_s" in r for r in ok)
    assert ok[1]["reply"].startswith("Here you go") and ok[1]["parsed"]["DEPTH"] == 8
    assert ok[3]["parsed"]["DEPTH"] == 7 and any("rounded" in n for n in ok[3]["notes"])
    assert "503" in recs[1]["error"] and recs[4]["reply"] == "no idea"
    # The history shown to the model has the simulated OOM as a failure with its reason.
    last_prompt = recs[-1]["messages"][1]["content"]
    assert "FAILED (oom: CUDA out of memory (simulated))" in last_prompt
    usage = llm_usage(study)
    assert usage["requests"] == 6 and usage["calls"] == 4 and usage["failed_calls"] == 0
    assert usage["tokens_in"] == sum(r.get("tokens_in") or 0 for r in recs)
    # Trials say where their configuration came from.
    sources = [t.system_attrs.get(SOURCE_KEY) for t in study.trials]
    assert sources[1:] == ["llm"] * 4


def test_replay_reproduces_the_study_exactly(tmp_path: Path) -> None:
    study, _ = recorded_study(tmp_path)
    cassette = export_cassette(study, tmp_path / "calls.jsonl")
    lines = cassette.read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["status"] == "ok"
    for source in (str(cassette), f"sqlite:///{tmp_path / 'rec.db'}#rec"):
        client = LLMClient(ReplayProvider(source, on_mismatch="raise"))
        sampler = make_sampler("llm_agent", _space(), 0, llm=client)
        again, summary = run_study(sampler, 5, name="again")
        assert isinstance(summary, dict), summary
        assert [t.params for t in again.trials] == [t.params for t in study.trials]
        assert [t.values for t in again.trials] == [t.values for t in study.trials]
        a, b = llm_calls(again), llm_calls(study)
        assert [r["reply"] if "reply" in r else r["error"] for r in a] == [
            r["reply"] if "reply" in r else "(replayed) " + r["error"] for r in b
        ]
        assert [r["prompt_hash"] for r in a] == [r["prompt_hash"] for r in b]
        assert client.provider.mismatches == []


def test_replay_detects_a_different_study(tmp_path: Path) -> None:
    study, _ = recorded_study(tmp_path)
    cassette = export_cassette(study, tmp_path / "calls.jsonl")
    # Another seed changes nothing in the prompt, but another history does: ask for more trials
    # than were recorded -> the cassette runs out, and the study stops with a clear message.
    client = LLMClient(ReplayProvider(cassette, on_mismatch="raise"))
    again, stopped = run_study(make_sampler("llm_agent", _space(), 0, llm=client), 7, name="more")
    assert isinstance(stopped, str) and "no more recorded calls" in stopped
    assert len([t for t in again.trials if t.state.name == "COMPLETE"]) == 5
    # A different task: the history in the prompt differs from the recording.
    client = LLMClient(ReplayProvider(cassette, on_mismatch="raise"))
    sampler = make_sampler("llm_agent", _space(), 0, llm=client, task="Another task entirely.")
    _, stopped = run_study(sampler, 3, name="other")
    assert isinstance(stopped, str) and "replayed prompt differs" in stopped
    with pytest.warns(UserWarning, match="replayed prompt differs"):
        client = LLMClient(ReplayProvider(cassette, on_mismatch="warn"))
        sampler = make_sampler("llm_agent", _space(), 0, llm=client, task="Another task entirely.")
        run_study(sampler, 2, name="warned")


def test_replay_sizes_prompts_like_the_recorded_model() -> None:
    """Exact replay of long studies needs the recorded model's context, tokens and reply budget."""
    pytest.importorskip("llama_cpp")
    from tests.llm.helpers import CASSETTES, autoresearch_space

    from centaur_hpo.llm.grammar import config_constraint

    replay = ReplayProvider(CASSETTES / "llm_agent.jsonl")
    assert replay.context_window == 8192 and replay.structured == "grammar"
    assert replay.count_tokens("0.123") == 5  # SmolLM2's tokenizer: one token per digit
    constraint = config_constraint(autoresearch_space())
    assert LLMClient(replay).reply_budget(constraint) == constraint.max_chars + 16
