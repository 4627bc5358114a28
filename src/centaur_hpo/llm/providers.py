"""HTTP backends (OpenAI-compatible, Anthropic) and a scripted backend for tests.

Plain ``urllib`` keeps the package free of HTTP dependencies. Requests to a loopback address skip
any configured proxy, so a local vLLM / llama.cpp / Ollama server is reached directly.

Structured output differs per OpenAI-compatible server, so :class:`OpenAIProvider` takes
``structured=``:

==============  =======================================================  ==========================
``json_schema``  ``response_format={"type": "json_schema", ...}``        OpenAI, vLLM, Ollama, Gemini
``guided_json``  ``guided_json=<schema>`` in the body (vLLM's extension)  vLLM
``grammar``      ``grammar=<GBNF>`` in the body                           llama.cpp server (ranges!)
``json_object``  ``response_format={"type": "json_object"}``              most servers, no ranges
``none``         nothing; the prompt alone asks for JSON                  anything
==============  =======================================================  ==========================

The default is ``json_schema`` (env ``CENTAUR_LLM_STRUCTURED`` overrides). Whatever the mode, the
client validates every reply itself; a server's structured mode only makes valid replies likelier.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from centaur_hpo.llm.base import (
    Constraint,
    Message,
    Provider,
    Reply,
    RequestRejected,
    TransportError,
    redact,
    redact_url,
)

STRUCTURED_MODES = ("json_schema", "guided_json", "grammar", "json_object", "none")
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"


def _is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def post_json(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout_s: float,
    secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """POST ``body`` as JSON and return the decoded answer.

    Raises :class:`TransportError` for timeouts, refused or dropped connections, HTTP 408/429/5xx
    and undecodable answers; :class:`RequestRejected` for other HTTP errors. Messages are
    redacted (no key, no credentials in the URL).
    """
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    for k, v in {"Content-Type": "application/json", **headers}.items():
        req.add_header(k, v)
    handlers = [urllib.request.ProxyHandler({})] if _is_loopback(url) else []
    opener = urllib.request.build_opener(*handlers)
    where = redact_url(url)
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        try:
            detail = e.read().decode(errors="replace")[:500]
        except Exception:  # noqa: BLE001 - the body is only for the message
            detail = ""
        msg = redact(f"HTTP {e.code} from {where}: {detail.strip()}", secrets)
        if e.code in (408, 429) or e.code >= 500:
            raise TransportError(msg) from None
        raise RequestRejected(msg) from None
    except TimeoutError:
        raise TransportError(f"no answer from {where} within {timeout_s:g} s (timeout)") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise TransportError(
                f"no answer from {where} within {timeout_s:g} s (timeout)"
            ) from None
        raise TransportError(redact(f"cannot reach {where}: {reason}", secrets)) from None
    except (http.client.HTTPException, ConnectionError, OSError) as e:
        raise TransportError(redact(f"connection to {where} failed: {e!r}", secrets)) from None
    try:
        answer = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        snippet = raw[:200].decode(errors="replace")
        raise TransportError(
            redact(f"{where} answered with non-JSON: {snippet!r}", secrets)
        ) from None
    if not isinstance(answer, dict):
        raise TransportError(f"{where} answered with JSON that is not an object")
    return answer


class OpenAIProvider(Provider):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (see the module doc for ``structured``).

    ``base_url``, ``model`` and ``api_key`` default to ``OPENAI_BASE_URL``, ``CENTAUR_LLM_MODEL``
    and ``OPENAI_API_KEY``. The key is sent as a bearer token and kept out of every repr, record
    and error message.
    """

    kind = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        structured: str | None = None,
        timeout_s: float = 120.0,
        context_window: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        base = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_URL).rstrip("/")
        model = model or os.environ.get("CENTAUR_LLM_MODEL") or ""
        if not model:
            raise ValueError(
                "no model given for the openai provider: use openai:MODEL[@URL] or set CENTAUR_LLM_MODEL"
            )
        super().__init__(model, redact_url(base), timeout_s=timeout_s)
        self._base = base
        self._key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        mode = structured or os.environ.get("CENTAUR_LLM_STRUCTURED") or "json_schema"
        if mode not in STRUCTURED_MODES:
            raise ValueError(f"structured={mode!r}; choose one of {', '.join(STRUCTURED_MODES)}")
        self.structured = mode
        self._context_window = context_window
        self.extra_body = dict(extra_body or {})

    @property
    def context_window(self) -> int | None:
        return self._context_window

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "structured": self.structured}

    def _body(
        self,
        messages: list[Message],
        constraint: Constraint | None,
        max_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            **self.extra_body,
        }
        if seed is not None:
            body["seed"] = seed
        if constraint is not None:
            mode = self.structured
            if mode == "json_schema" and constraint.schema is not None:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": constraint.name.split("[")[0],
                        "schema": constraint.schema,
                    },
                }
            elif mode == "guided_json" and constraint.schema is not None:
                body["guided_json"] = constraint.schema
            elif mode == "grammar" and constraint.grammar is not None:
                body["grammar"] = constraint.grammar
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object"}
        return body

    def complete(
        self,
        messages: list[Message],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        body = self._body(messages, constraint, max_tokens, temperature, seed)
        t0 = time.monotonic()
        answer = post_json(
            f"{self._base}/chat/completions", body, headers, self.timeout_s or 120.0, (self._key,)
        )
        latency = time.monotonic() - t0
        try:
            choice = answer["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransportError(
                redact(
                    f"{self.endpoint} answered without choices: {str(answer)[:300]}", (self._key,)
                )
            ) from None
        usage = answer.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Reply(
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_s=latency,
            model=str(answer.get("model") or self.model),
            finish_reason=choice.get("finish_reason"),
            cached_tokens=details.get("cached_tokens"),
        )

    def __repr__(self) -> str:
        key = "***" if self._key else "none"
        return f"OpenAIProvider(model={self.model!r}, base_url={self.endpoint!r}, key={key})"


class AnthropicProvider(Provider):
    """Anthropic's Messages API. ``structured="tool"`` (default) forces a tool call whose input
    schema is the constraint's JSON schema; ``"none"`` relies on the prompt and parsing."""

    kind = "anthropic"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        structured: str = "tool",
        timeout_s: float = 120.0,
        context_window: int | None = 200_000,
    ) -> None:
        base = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_ANTHROPIC_URL).rstrip(
            "/"
        )
        model = model or os.environ.get("CENTAUR_LLM_MODEL") or ""
        if not model:
            raise ValueError(
                "no model given for the anthropic provider: use anthropic:MODEL or set CENTAUR_LLM_MODEL"
            )
        super().__init__(model, redact_url(base), timeout_s=timeout_s)
        self._base = base
        self._key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY", "")
        if structured not in ("tool", "none"):
            raise ValueError("structured must be 'tool' or 'none' for the anthropic provider")
        self.structured = structured
        self._context_window = context_window

    @property
    def context_window(self) -> int | None:
        return self._context_window

    def complete(
        self,
        messages: list[Message],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        chat = [
            {"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "messages": chat,
        }
        if system:
            body["system"] = system
        tool = None
        if constraint is not None and constraint.schema is not None and self.structured == "tool":
            tool = "submit_" + constraint.name.split("[")[0]
            body["tools"] = [
                {
                    "name": tool,
                    "description": "Submit the answer.",
                    "input_schema": constraint.schema,
                }
            ]
            body["tool_choice"] = {"type": "tool", "name": tool}
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._key:
            headers["x-api-key"] = self._key
        t0 = time.monotonic()
        answer = post_json(
            f"{self._base}/v1/messages", body, headers, self.timeout_s or 120.0, (self._key,)
        )
        latency = time.monotonic() - t0
        blocks = answer.get("content")
        if not isinstance(blocks, list):
            raise TransportError(
                redact(
                    f"{self.endpoint} answered without content: {str(answer)[:300]}", (self._key,)
                )
            )
        texts = []
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_use":
                texts.append(json.dumps(b.get("input")))
            elif isinstance(b, dict) and b.get("type") == "text":
                texts.append(str(b.get("text", "")))
        usage = answer.get("usage") or {}
        return Reply(
            text="\n".join(texts),
            tokens_in=int(usage.get("input_tokens") or 0),
            tokens_out=int(usage.get("output_tokens") or 0),
            latency_s=latency,
            model=str(answer.get("model") or self.model),
            finish_reason=answer.get("stop_reason"),
            cached_tokens=usage.get("cache_read_input_tokens"),
        )

    def __repr__(self) -> str:
        key = "***" if self._key else "none"
        return f"AnthropicProvider(model={self.model!r}, base_url={self.endpoint!r}, key={key})"


ScriptItem = str | BaseException | Callable[[list[Message]], "str | Reply"]


class ScriptedProvider(Provider):
    """Answers from a list: a string is a reply, an exception is raised, a callable gets the
    messages and returns a reply. Runs out -> :class:`TransportError` (as a dead server would)."""

    kind = "scripted"
    realtime = False

    def __init__(self, replies: Sequence[ScriptItem], model: str = "scripted") -> None:
        super().__init__(model, "")
        self.replies = list(replies)
        self.calls: list[list[Message]] = []

    def complete(
        self,
        messages: list[Message],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        self.calls.append(messages)
        if not self.replies:
            raise TransportError("the scripted provider has no replies left")
        item = self.replies.pop(0)
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            item = item(messages)
        if isinstance(item, Reply):
            return item
        return Reply(
            text=str(item),
            tokens_in=sum(len(m["content"]) // 4 for m in messages),
            tokens_out=len(str(item)) // 4,
            model=self.model,
        )
