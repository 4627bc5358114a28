"""Provider faults against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server (http.server in a thread) answers each request from a script: time out, HTTP 500,
prose, out-of-range values, or a valid configuration. The study must behave as the failure
policy says: retry transport errors, re-ask invalid replies, stop with a message naming the
endpoint after N consecutive failed calls, fall back only when opted in (and record it), never
run or tell a configuration that did not come back valid, and lose no recorded trial.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from optuna.trial import TrialState
from tests.llm.helpers import run_study, small_space

from centaur_hpo.llm import LLMClient, RequestRejected, llm_calls
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.providers import OpenAIProvider
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import NOT_RUN_KEY, SOURCE_KEY

GOOD = '{"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}'
GOOD2 = '{"LR": 0.005, "DEPTH": 7, "ACT": "gelu"}'
PROSE = "A learning rate of 0.02 with five layers should do better than the default."
OUT_OF_RANGE = '{"LR": 3.5, "DEPTH": 40, "ACT": "gelu"}'
KEY = "sk-test-0123456789abcdefXYZ"


class FakeOpenAI:
    """A chat-completions server whose answers follow a script (then HTTP 500 forever)."""

    def __init__(self) -> None:
        self.script: list[tuple[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                kind, arg = outer.script.pop(0) if outer.script else ("status", 500)
                try:
                    if kind == "sleep":
                        time.sleep(arg)
                        kind, arg = "text", GOOD
                    if kind == "status":
                        self.send_response(arg)
                        self.end_headers()
                        self.wfile.write(b'{"error": "internal error"}')
                        return
                    if kind == "echo_auth":  # a careless server that echoes the key back
                        self.send_response(401)
                        self.end_headers()
                        self.wfile.write(
                            f"bad key {self.headers.get('Authorization')} {self.headers.get('x-api-key')}".encode()
                        )
                        return
                    answer = {
                        "model": body["model"],
                        "choices": [
                            {
                                "message": {"role": "assistant", "content": arg},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 120,
                            "completion_tokens": 17,
                            "prompt_tokens_details": {"cached_tokens": 100},
                        },
                    }
                    if self.path.endswith("/messages"):  # Anthropic's Messages API
                        answer = {
                            "model": body["model"],
                            "content": [
                                {"type": "tool_use", "name": "x", "input": json.loads(arg)}
                            ],
                            "stop_reason": "tool_use",
                            "usage": {"input_tokens": 90, "output_tokens": 30},
                        }
                    data = json.dumps(answer).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) before we answered

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    s = FakeOpenAI()
    yield s
    s.close()


def agent(server: FakeOpenAI, **options: Any):  # type: ignore[no-untyped-def]
    opts = {"timeout_s": 1.5, "backoff_s": 0.01, "retries": 2, "reasks": 2, **options}
    return make_sampler(
        "llm_agent", small_space(), 0, llm=f"openai:test-model@{server.url}", **opts
    )


def assert_nothing_unevaluated_was_told(study) -> None:  # type: ignore[no-untyped-def]
    """Every COMPLETE trial ran (has an outcome); every not-run trial was never told a value."""
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs.get("outcome") in ("ok", "oom"), t.number
            assert NOT_RUN_KEY not in t.system_attrs
        if NOT_RUN_KEY in t.system_attrs:
            assert t.state == TrialState.FAIL and t.values is None


def test_request_format_key_and_usage(server: FakeOpenAI) -> None:
    server.script = [("text", GOOD), ("text", GOOD), ("echo_auth", None)]
    cons = config_constraint(small_space())
    p = OpenAIProvider("m", server.url, KEY, timeout_s=2)
    reply = p.complete([{"role": "user", "content": "hi"}], constraint=cons, seed=3)
    assert reply.text == GOOD and reply.tokens_in == 120 and reply.cached_tokens == 100
    body = server.requests[0]
    assert body["response_format"]["json_schema"]["schema"] == cons.schema
    assert body["seed"] == 3 and server.headers[0]["authorization"] == f"Bearer {KEY}"
    OpenAIProvider("m", server.url, KEY, structured="grammar").complete([], constraint=cons)
    assert server.requests[1]["grammar"] == cons.grammar
    with pytest.raises(RequestRejected) as e:
        p.complete([{"role": "user", "content": "hi"}])
    assert "HTTP 401" in str(e.value) and KEY not in str(e.value)


def test_retries_and_re_asks_inside_one_trial(server: FakeOpenAI) -> None:
    server.script = [
        ("status", 500),
        ("sleep", 3.0),
        ("text", PROSE),
        ("text", OUT_OF_RANGE),
        ("text", GOOD),
    ]
    study, summary = run_study(agent(server), 2)
    assert isinstance(summary, dict), summary
    t1 = study.trials[1]
    assert t1.params == {"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}
    assert t1.system_attrs[SOURCE_KEY] == "llm"
    recs = llm_calls(study)
    assert [r["status"] for r in recs] == [
        "transport_error",
        "transport_error",
        "invalid",
        "invalid",
        "ok",
    ]
    assert "HTTP 500" in recs[0]["error"] and "timeout" in recs[1]["error"]
    assert recs[2]["reply"] == PROSE and "no JSON object" in recs[2]["error"]
    assert "LR: 3.5 is outside" in recs[3]["error"]
    assert recs[4]["parsed"] == {"LR": 0.02, "DEPTH": 5, "ACT": "gelu"}
    assert all(r["trial"] == 1 and r["endpoint"] == server.url for r in recs)
    assert_nothing_unevaluated_was_told(study)


def test_stops_after_consecutive_failures_naming_the_endpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    s = FakeOpenAI()
    try:
        s.script = [("text", GOOD)]  # trial 1 gets a configuration, then the server breaks
        study, stopped = run_study(
            agent(s, max_failed_calls=3, retries=1), 10, storage=storage, name="faults"
        )
    finally:
        s.close()
    assert isinstance(stopped, str)
    assert "3 consecutive calls" in stopped and s.url in stopped and "--llm" in stopped
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials[:2]] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[2].system_attrs.get(NOT_RUN_KEY) and len(trials) == 3  # no empty trials
    statuses = [r["status"] for r in llm_calls(study)]
    # 3 failed calls x (1 try + 1 retry) after the first good one; nothing sent after that
    assert statuses == ["ok"] + ["transport_error"] * 6
    assert_nothing_unevaluated_was_told(study)

    # Nothing recorded is lost: with the server back, the same study continues.
    s2 = FakeOpenAI()
    try:
        s2.script = [("text", GOOD2)]
        study, summary = run_study(agent(s2), 3, storage=storage, name="faults")
    finally:
        s2.close()
    assert isinstance(summary, dict), summary
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert [t.number for t in done] == [0, 1, 3]
    assert done[1].params["LR"] == 0.02 and done[2].params["LR"] == 0.005


def test_fallback_only_when_opted_in_and_recorded(server: FakeOpenAI) -> None:
    server.script = [("text", GOOD)]
    study, summary = run_study(agent(server, fallback=True, max_failed_calls=2, retries=0), 6)
    assert isinstance(summary, dict), summary
    sources = [t.system_attrs.get(SOURCE_KEY) for t in study.trials]
    assert sources[1] == "llm"
    # First failures fall back per failed call, then the LLM is unavailable: no more requests.
    assert sources[2:] == [
        "fallback:call_failed",
        "fallback:unavailable",
        "fallback:unavailable",
        "fallback:unavailable",
    ]
    assert "HTTP 500" in study.trials[2].system_attrs["centaur:fallback_error"]
    for t in study.trials:
        assert small_space().validate(t.params) == []
    assert len(server.requests) == 3
    assert_nothing_unevaluated_was_told(study)


def test_client_records_never_hold_the_key(server: FakeOpenAI) -> None:
    server.script = [("echo_auth", None)] * 3
    c = LLMClient(OpenAIProvider("m", server.url, KEY, timeout_s=2), sleep=lambda s: None)
    sampler = make_sampler("llm_agent", small_space(), 0, llm=c)
    study, stopped = run_study(sampler, 3)
    assert isinstance(stopped, str) and "HTTP 401" in stopped and KEY not in stopped
    text = (
        json.dumps(llm_calls(study))
        + json.dumps(study._storage.get_study_system_attrs(study._study_id))
        + json.dumps([t.system_attrs for t in study.trials])
    )
    assert KEY not in text and "***" in text


def test_anthropic_messages_api(server: FakeOpenAI) -> None:
    from centaur_hpo.llm.providers import AnthropicProvider

    server.script = [("text", GOOD), ("echo_auth", None)]
    p = AnthropicProvider("claude-test", server.url.removesuffix("/v1"), KEY, timeout_s=2)
    client = LLMClient(p)
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "next?"}]
    config, _ = client.ask_config(msgs, small_space())
    assert config == json.loads(GOOD)
    body, headers = server.requests[0], server.headers[0]
    assert body["system"] == "be brief" and body["messages"] == msgs[1:]
    assert body["tool_choice"]["type"] == "tool"
    assert body["tools"][0]["input_schema"] == config_constraint(small_space()).schema
    assert headers["x-api-key"] == KEY and headers["anthropic-version"]
    assert client.records[-1]["tokens_in"] == 90
    with pytest.raises(RequestRejected) as e:
        p.complete(msgs)
    assert KEY not in str(e.value)
