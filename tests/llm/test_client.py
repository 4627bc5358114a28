"""The client's failure policy: retries with backoff, re-asks, consecutive-failure stop, specs."""

from __future__ import annotations

import pytest
from tests.llm.helpers import small_space

from centaur_hpo.llm import (
    LLMCallFailed,
    LLMClient,
    LLMUnavailable,
    RequestRejected,
    ScriptedProvider,
    TransportError,
    make_client,
    make_provider,
    redact,
)
from centaur_hpo.llm.base import redact_url
from centaur_hpo.llm.providers import AnthropicProvider, OpenAIProvider

SPACE = small_space()
GOOD = '{"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}'
MSGS = [{"role": "user", "content": "next configuration?"}]


class RealtimeScripted(ScriptedProvider):
    """A scripted provider the client treats as a live server (so it backs off)."""

    realtime = True


def client(replies: list, **kw) -> tuple[LLMClient, list[float]]:  # type: ignore[type-arg]
    sleeps: list[float] = []
    c = LLMClient(RealtimeScripted(replies), sleep=sleeps.append, **kw)
    return c, sleeps


def test_transport_errors_are_retried_with_exponential_backoff() -> None:
    c, sleeps = client([TransportError("HTTP 500"), TransportError("timeout"), GOOD], backoff_s=0.5)
    config, notes = c.ask_config(MSGS, SPACE)
    assert config["LR"] == 0.02 and notes == []
    assert sleeps == [0.5, 1.0]
    assert [r["status"] for r in c.records] == ["transport_error", "transport_error", "ok"]
    assert c.consecutive_failures == 0


def test_backoff_is_capped_and_retries_are_limited() -> None:
    c, sleeps = client([TransportError("down")] * 5, retries=3, backoff_s=10, backoff_max_s=15)
    with pytest.raises(LLMCallFailed, match="after 4 attempts"):
        c.ask_config(MSGS, SPACE)
    assert sleeps == [10, 15, 15]


def test_a_rejected_request_is_not_retried() -> None:
    c, sleeps = client([RequestRejected("HTTP 401: bad key"), GOOD])
    with pytest.raises(LLMCallFailed, match="HTTP 401"):
        c.ask_config(MSGS, SPACE)
    assert sleeps == [] and len(c.records) == 1


def test_invalid_replies_are_re_asked_with_the_reason() -> None:
    provider = ScriptedProvider(
        ["I suggest a higher learning rate.", '{"LR": 5, "DEPTH": 5, "ACT": "gelu"}', GOOD]
    )
    c = LLMClient(provider, reasks=2)
    config, _ = c.ask_config(MSGS, SPACE)
    assert config["LR"] == 0.02
    # The second request showed the model its reply and why it was rejected.
    second = provider.calls[1]
    assert second[-2] == {"role": "assistant", "content": "I suggest a higher learning rate."}
    assert "no JSON object" in second[-1]["content"]
    assert "LR: 5.0 is outside" in provider.calls[2][-1]["content"]
    assert [r["status"] for r in c.records] == ["invalid", "invalid", "ok"]
    assert all(r["call"] == c.records[0]["call"] for r in c.records)  # one call, three attempts


def test_consecutive_failed_calls_make_the_llm_unavailable() -> None:
    c = LLMClient(ScriptedProvider(["no"] * 20, model="m1"), reasks=1, max_failed_calls=3)
    with pytest.raises(LLMCallFailed):
        c.ask_config(MSGS, SPACE)
    with pytest.raises(LLMCallFailed):
        c.ask_config(MSGS, SPACE)
    with pytest.raises(LLMUnavailable, match="3 consecutive calls to scripted model m1 failed"):
        c.ask_config(MSGS, SPACE)
    sent = len(c.provider.calls)
    with pytest.raises(LLMUnavailable):  # later calls are answered at once, nothing is sent
        c.ask_config(MSGS, SPACE)
    assert len(c.provider.calls) == sent
    assert c.records[-1]["status"] == "skipped"
    c.reset()
    c.provider.replies = [GOOD]
    assert c.ask_config(MSGS, SPACE)[0]["DEPTH"] == 5


def test_a_success_resets_the_failure_count() -> None:
    c = LLMClient(ScriptedProvider(["x", GOOD] * 3), reasks=0, max_failed_calls=2)
    for _ in range(3):
        with pytest.raises(LLMCallFailed):
            c.ask_config(MSGS, SPACE)
        c.ask_config(MSGS, SPACE)


def test_errors_are_method_proposal_errors() -> None:
    from centaur_hpo.methods.base import ProposalError

    assert issubclass(LLMCallFailed, ProposalError) and issubclass(LLMUnavailable, ProposalError)


def test_reply_budget_follows_the_constraint() -> None:
    from centaur_hpo.llm.grammar import config_constraint

    cons = config_constraint(SPACE)
    assert LLMClient(ScriptedProvider([])).reply_budget(cons) == max(1024, 2 * cons.max_chars)
    grammar_server = OpenAIProvider("m", "http://127.0.0.1:1/v1", "", structured="grammar")
    assert LLMClient(grammar_server).reply_budget(cons) == cons.max_chars + 16
    assert LLMClient(grammar_server, max_tokens=99).reply_budget(cons) == 99


def test_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CENTAUR_LLM", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-abcdefghijklmnop")
    p = make_provider("openai:qwen2.5-7b@http://127.0.0.1:8000/v1")
    assert isinstance(p, OpenAIProvider) and p.model == "qwen2.5-7b"
    assert p.endpoint == "http://127.0.0.1:8000/v1"
    assert "sk-test" not in repr(p) and "sk-test" not in str(p.describe())
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:11434/v1")
    p = make_provider("openai:llama3")
    assert p.endpoint == "http://localhost:11434/v1"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-abcdefghijklmnopqrs")
    a = make_provider("anthropic:claude-x")
    assert isinstance(a, AnthropicProvider) and "sk-ant" not in repr(a)
    monkeypatch.setenv("CENTAUR_LLM", "openai:from-env@http://127.0.0.1:9/v1")
    assert make_provider().model == "from-env"
    with pytest.raises(ValueError, match="unknown LLM spec"):
        make_provider("gpt4")
    with pytest.raises(ValueError, match="no model"):
        monkeypatch.delenv("CENTAUR_LLM_MODEL", raising=False)
        make_provider("openai")
    c = make_client("openai:m@http://127.0.0.1:9/v1", retries=7, structured="grammar")
    assert c.retries == 7 and c.provider.structured == "grammar"
    assert make_client(c) is c


def test_redaction() -> None:
    assert redact("error for sk-abcdefghijklmnopqrstuv!") == "error for ***!"
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert redact("key=hunter22 here", ["hunter22"]) == "key=*** here"
    assert (
        redact_url("https://user:pw@host:8/v1?api_key=SECRET&x=1")
        == "https://host:8/v1?api_key=***&x=1"
    )
