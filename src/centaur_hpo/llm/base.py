"""The small interface every LLM backend implements, the errors of the LLM layer, and redaction.

A :class:`Provider` turns chat messages into one :class:`Reply`. It knows nothing about search
spaces, retries or records: the :class:`~centaur_hpo.llm.client.LLMClient` owns those, so each
backend stays a thin adapter that is easy to fake in tests.

Errors are split by what the caller should do about them:

* :class:`TransportError` - the request did not get a usable answer (timeout, refused connection,
  HTTP 5xx/429): worth retrying after a pause.
* :class:`RequestRejected` - the server refused the request itself (HTTP 4xx: bad key, unknown
  model, unsupported option): retrying the same request cannot help.
* :class:`ParseError` - a reply came back but is not a valid answer: worth re-asking.
* :class:`LLMCallFailed` / :class:`LLMUnavailable` - what a method sees. Both are
  :class:`~centaur_hpo.methods.base.ProposalError`, so a study never tells an optimizer anything
  about a configuration that did not run.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from centaur_hpo.methods.base import ProposalError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


# -- errors ------------------------------------------------------------------------------------
class TransportError(RuntimeError):
    """No usable answer came back (timeout, refused connection, HTTP 5xx/429); retryable."""


class RequestRejected(RuntimeError):
    """The server refused the request (HTTP 4xx other than 408/429); retrying cannot help."""


class ParseError(ValueError):
    """A reply is not a valid answer; the message says why (it is shown to the LLM on re-ask)."""


class LLMError(ProposalError):
    """Base of the errors a method receives from the LLM layer."""


class LLMCallFailed(LLMError):
    """One call (with its retries and re-asks) ended without a valid answer."""


class LLMUnavailable(LLMError):
    """Several consecutive calls failed: the endpoint is treated as down (message names it)."""


# -- data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Constraint:
    """What a reply must look like, in the forms different servers understand.

    ``grammar`` is GBNF (llama.cpp); ``schema`` a JSON schema (OpenAI, vLLM, Anthropic tools).
    ``max_chars`` is the longest reply the grammar can produce, used to size ``max_tokens``.
    A backend uses what it supports; the client always validates the reply afterwards.
    """

    name: str
    grammar: str | None = None
    schema: dict[str, Any] | None = None
    max_chars: int | None = None

    def digest(self) -> str:
        return text_hash(json.dumps([self.grammar, self.schema], sort_keys=True))


@dataclass
class Reply:
    """One completion. Latency and token counts are what the backend measured or reported."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    model: str = ""
    finish_reason: str | None = None
    cached_tokens: int | None = None  # prompt tokens served from a prefix cache, if known
    prompt_eval_s: float | None = None  # time spent on the (uncached) prompt, if known
    generation_s: float | None = None  # time spent generating, if known
    extra: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """A chat-completion backend.

    Subclasses set ``kind`` (``openai``, ``anthropic``, ``local``, ``scripted``, ``replay``),
    ``model`` and ``endpoint`` (a display string with no secret in it). ``realtime`` is False for
    backends that answer from a recording: the client then does not sleep between retries.
    """

    kind = "provider"
    realtime = True

    def __init__(self, model: str = "", endpoint: str = "", *, timeout_s: float | None = None):
        self.model = model
        self.endpoint = endpoint
        self.timeout_s = timeout_s

    @abstractmethod
    def complete(
        self,
        messages: list[Message],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        """Return one reply or raise :class:`TransportError` / :class:`RequestRejected`."""

    @property
    def context_window(self) -> int | None:
        """Prompt + reply tokens the model accepts, if known (used to size history windows)."""
        return None

    def count_tokens(self, text: str) -> int:
        """Token count of ``text``; without a tokenizer, a conservative 1 token per 3 chars."""
        return len(text) // 3 + 1

    def describe(self) -> dict[str, Any]:
        """Who answers, for records and error messages; never contains a key."""
        return {"provider": self.kind, "model": self.model, "endpoint": self.endpoint}

    def label(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"{self.kind} model {self.model or '?'}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, endpoint={self.endpoint!r})"


# -- redaction ---------------------------------------------------------------------------------
_KEYLIKE = re.compile(
    r"\b(sk-(?:ant-)?[A-Za-z0-9_\-]{12,}|AIza[0-9A-Za-z_\-]{20,}|(?:Bearer|bearer)\s+[A-Za-z0-9._\-]{12,})"
)
_SECRET_PARAMS = {"key", "api_key", "apikey", "token", "access_token", "secret", "password"}


def redact(text: Any, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """``text`` with every known secret and anything shaped like an API key replaced by ***."""
    out = str(text)
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, "***")
    return _KEYLIKE.sub("***", out)


def redact_url(url: str) -> str:
    """A URL fit for logs: no user:password, secret-looking query parameters masked."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in query]
    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path, urllib.parse.urlencode(query, safe="*"), "")
    )


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prompt_hash(messages: list[Message]) -> str:
    """A short, stable fingerprint of a prompt (replay checks it against the recording)."""
    return text_hash(json.dumps(messages, sort_keys=True, ensure_ascii=False))
