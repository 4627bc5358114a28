"""The one client every LLM method uses: failure policy, re-asks, validation and provenance.

Failure policy of one *call* (one question a method asks, e.g. "the next configuration"):

* **transport errors** (timeout, refused connection, HTTP 408/429/5xx): the same request is sent
  again up to ``retries`` times, after ``backoff_s * 2**(k-1)`` seconds (capped at
  ``backoff_max_s``); no sleeping when the provider answers from a recording;
* **rejected requests** (other HTTP 4xx: bad key, unknown model): no retry, the call fails;
* **invalid replies** (unparseable, out of range, an unknown choice): the model is shown its reply
  and the reason and asked again, up to ``reasks`` times;
* a call that ends without a valid answer raises :class:`LLMCallFailed`; after
  ``max_failed_calls`` consecutive failed calls the client raises :class:`LLMUnavailable` (its
  message names provider, model and endpoint, never a key) and answers every later call with
  it at once, without sending anything, until :meth:`LLMClient.reset`.

Both errors are :class:`~centaur_hpo.methods.base.ProposalError`: the study never runs, and never
tells an optimizer about, a configuration that did not come back valid. The LLM methods call
again after a failed call (:func:`centaur_hpo.llm.sampling.settle`), so without a fallback a
study stops exactly when the client declares the LLM unavailable, with its message. A fallback
to a classical sampler is opt-in, taken at the first failed call, and recorded as the trial's
source ``fallback:<reason>``.

Every request becomes a record (:mod:`centaur_hpo.llm.records`), stored in the study when the
call names one, and kept in :attr:`LLMClient.records` (the most recent 500) either way.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from optuna.study import Study
from optuna.trial import FrozenTrial

from centaur_hpo.llm.base import (
    Constraint,
    LLMCallFailed,
    LLMUnavailable,
    Message,
    ParseError,
    Provider,
    RequestRejected,
    TransportError,
    prompt_hash,
    redact,
)
from centaur_hpo.llm.grammar import bounds_constraint, config_constraint, scores_constraint
from centaur_hpo.llm.parse import parse_bounds, parse_config, parse_configs, parse_scores
from centaur_hpo.llm.records import ReplayProvider, store_record, summarize
from centaur_hpo.space import Config, SearchSpace

T = TypeVar("T")
Parser = Callable[[str], tuple[T, list[str]]]

#: Context assumed for a remote model that does not state its own (a conservative size).
DEFAULT_REMOTE_CONTEXT = 32768

REASK = (
    "Your previous reply was not valid: {reason}. Reply again with only the JSON, using exactly "
    "the names, ranges and choices given."
)


class LLMClient:
    """Sends prompts through a :class:`Provider` under the failure policy in the module doc."""

    def __init__(
        self,
        provider: Provider,
        *,
        retries: int = 3,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        reasks: int = 2,
        max_failed_calls: int = 3,
        max_tokens: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.reasks = reasks
        self.max_failed_calls = max_failed_calls
        self.max_tokens = max_tokens
        self.sleep = sleep
        self.records: deque[dict[str, Any]] = deque(maxlen=500)
        self.consecutive_failures = 0
        self.unavailable: str | None = None
        self._secrets = tuple(
            s for s in (getattr(provider, "_key", None),) if isinstance(s, str) and s
        )

    # -- information -------------------------------------------------------------------------
    def label(self) -> str:
        return self.provider.label()

    def describe(self) -> dict[str, Any]:
        return {
            **self.provider.describe(),
            "retries": self.retries,
            "reasks": self.reasks,
            "max_failed_calls": self.max_failed_calls,
        }

    @property
    def context_window(self) -> int:
        return self.provider.context_window or DEFAULT_REMOTE_CONTEXT

    def count_tokens(self, messages: list[Message] | str) -> int:
        """Prompt tokens of ``messages`` (16 per message for the chat template's markup)."""
        if isinstance(messages, str):
            return self.provider.count_tokens(messages)
        return sum(self.provider.count_tokens(m["content"]) + 16 for m in messages)

    def usage(self) -> dict[str, Any]:
        """Token and latency totals of the records this client kept in memory."""
        return summarize(self.records)

    def reset(self) -> None:
        """Forget failures: the next call is sent even after :class:`LLMUnavailable`."""
        self.consecutive_failures = 0
        self.unavailable = None

    def reply_budget(self, constraint: Constraint | None) -> int:
        """``max_tokens`` for a reply: the client's setting, else sized from the constraint.

        With a grammar the reply has at most ``max_chars`` characters (never more tokens than
        characters); a server without one may add whitespace or prose, so it gets more room.
        """
        if self.max_tokens:
            return self.max_tokens
        chars = constraint.max_chars if constraint and constraint.max_chars else 512
        grammar_enforced = self.provider.kind == "local" or (
            getattr(self.provider, "structured", None) == "grammar"
        )
        return chars + 16 if grammar_enforced else max(1024, 2 * chars)

    # -- the call ----------------------------------------------------------------------------
    def ask(
        self,
        messages: list[Message],
        parse: Parser[T],
        *,
        constraint: Constraint | None = None,
        study: Study | None = None,
        trial: FrozenTrial | int | None = None,
        method: str = "",
        purpose: str = "",
        temperature: float = 0.0,
        seed: int | None = None,
        max_tokens: int | None = None,
        with_notes: bool = False,
        reask: str = REASK,
    ) -> Any:
        """Send ``messages`` and return ``parse(reply)``'s value (see the module doc's policy).

        ``parse`` returns ``(value, notes)`` or raises :class:`ParseError`; with ``with_notes``
        the call returns ``(value, notes)`` too. ``reask`` is the follow-up shown after an
        invalid reply (``{reason}`` is filled in); replies that are not JSON need their own.
        """
        trial_no = trial.number if isinstance(trial, FrozenTrial) else trial
        base: dict[str, Any] = {
            "call": uuid.uuid4().hex[:12],
            "time": time.time(),
            "trial": trial_no,
            "method": method,
            "purpose": purpose,
            **self.provider.describe(),
            "context_window": self.provider.context_window,
            "constraint": None
            if constraint is None
            else {"name": constraint.name, "digest": constraint.digest()},
            "temperature": temperature,
        }
        if self.unavailable:
            self._record(
                study, {**base, "attempt": 0, "status": "skipped", "error": self.unavailable}
            )
            raise LLMUnavailable(self.unavailable)
        limit = max_tokens or self.reply_budget(constraint)
        msgs = list(messages)
        transport_tries = 0
        reasks_left = self.reasks
        attempt = 0
        while True:
            attempt += 1
            attempt_seed = None if seed is None else seed + attempt - 1
            rec: dict[str, Any] = {
                **base,
                "attempt": attempt,
                "seed": attempt_seed,
                "messages": msgs,
                "prompt_hash": prompt_hash(msgs),
            }
            try:
                reply = self.provider.complete(
                    msgs,
                    constraint=constraint,
                    max_tokens=limit,
                    temperature=temperature,
                    seed=attempt_seed,
                )
            except TransportError as e:
                error = redact(e, self._secrets)
                self._record(study, {**rec, "status": "transport_error", "error": error})
                transport_tries += 1
                if transport_tries > self.retries:
                    self._fail(f"{error} (after {transport_tries} attempts)")
                if self.provider.realtime:
                    self.sleep(min(self.backoff_max_s, self.backoff_s * 2 ** (transport_tries - 1)))
                continue
            except RequestRejected as e:
                error = redact(e, self._secrets)
                self._record(study, {**rec, "status": "rejected", "error": error})
                self._fail(error)
            except Exception as e:
                self._record(
                    study, {**rec, "status": "error", "error": redact(repr(e), self._secrets)}
                )
                raise
            rec.update(
                reply=reply.text,
                tokens_in=reply.tokens_in,
                tokens_out=reply.tokens_out,
                cached_tokens=reply.cached_tokens,
                latency_s=round(reply.latency_s, 4),
                reply_model=reply.model,
                finish_reason=reply.finish_reason,
                **(
                    {"replayed_seq": reply.extra["replayed_seq"]}
                    if "replayed_seq" in reply.extra
                    else {}
                ),
            )
            try:
                value, notes = parse(reply.text)
            except ParseError as e:
                self._record(study, {**rec, "status": "invalid", "error": str(e)})
                if reasks_left <= 0:
                    self._fail(f"invalid reply after {self.reasks} re-asks: {e}")
                reasks_left -= 1
                msgs = msgs + [
                    {"role": "assistant", "content": reply.text},
                    {"role": "user", "content": reask.format(reason=e)},
                ]
                continue
            self._record(study, {**rec, "status": "ok", "parsed": value, "notes": notes})
            self.consecutive_failures = 0
            return (value, notes) if with_notes else value

    def _record(self, study: Study | None, rec: dict[str, Any]) -> None:
        if study is not None:
            store_record(study, rec)
        self.records.append(rec)

    def _fail(self, reason: str) -> None:
        self.consecutive_failures += 1
        who = self.label()
        if self.consecutive_failures >= self.max_failed_calls:
            self.unavailable = (
                f"LLM unavailable: {self.consecutive_failures} consecutive calls to {who} failed; "
                f"last error: {reason}. Check that the server is up, or choose another LLM (--llm)."
            )
            raise LLMUnavailable(self.unavailable)
        raise LLMCallFailed(f"LLM call to {who} failed: {reason}")

    # -- typed questions ---------------------------------------------------------------------
    def ask_config(
        self,
        messages: list[Message],
        space: SearchSpace,
        *,
        repair: bool = False,
        unknown: Literal["ignore", "reject"] = "ignore",
        fill: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> tuple[Config, list[str]]:
        """One valid configuration of ``space`` (and the parser's notes)."""

        def parse(text: str) -> tuple[Config, list[str]]:
            return parse_config(text, space, repair=repair, unknown=unknown, fill=fill)

        return self.ask(
            messages, parse, constraint=config_constraint(space), with_notes=True, **kwargs
        )

    def ask_configs(
        self, messages: list[Message], space: SearchSpace, n: int, **kwargs: Any
    ) -> list[Config]:
        """Up to ``n`` distinct valid configurations in one reply (``{"configs": [...]}``)."""

        def parse(text: str) -> tuple[list[Config], list[str]]:
            return parse_configs(text, space, n)

        return self.ask(messages, parse, constraint=config_constraint(space, n), **kwargs)

    def ask_scores(
        self, messages: list[Message], n: int, low: float, high: float, decimals: int, **kwargs: Any
    ) -> list[float]:
        """``n`` predicted scores, each inside ``[low, high]`` (``{"scores": [...]}``)."""

        def parse(text: str) -> tuple[list[float], list[str]]:
            scores, notes = parse_scores(text, n)
            bad = [s for s in scores if not low <= s <= high]
            if bad:
                raise ParseError(f"scores {bad} are outside [{low:g}, {high:g}]")
            return scores, notes

        return self.ask(
            messages, parse, constraint=scores_constraint(n, low, high, decimals), **kwargs
        )

    def ask_bounds(
        self, messages: list[Message], space: SearchSpace, **kwargs: Any
    ) -> dict[str, tuple[float, float]]:
        """Narrower ``[low, high]`` per numeric parameter, each inside the space's range."""

        def parse(text: str) -> tuple[dict[str, tuple[float, float]], list[str]]:
            return parse_bounds(text, space)

        return self.ask(messages, parse, constraint=bounds_constraint(space), **kwargs)

    def __repr__(self) -> str:
        return f"LLMClient({self.provider!r})"


# -- provider specs ----------------------------------------------------------------------------
SPEC_HELP = (
    "local | local:PATH.gguf | openai[:MODEL][@URL] | URL | anthropic[:MODEL][@URL] | "
    "replay:CASSETTE.jsonl | replay:STORAGE_URL#STUDY"
)


def _split_url(rest: str) -> tuple[str, str | None]:
    for marker in ("@http://", "@https://"):
        i = rest.find(marker)
        if i >= 0:
            return rest[:i], rest[i + 1 :]
    return rest, None


def make_provider(spec: str | None = None, **options: Any) -> Provider:
    """The provider a spec string names (see :data:`SPEC_HELP`).

    No spec means ``CENTAUR_LLM`` from the environment, else ``local``: the embedded model is the
    default when nothing is configured (an API key in the environment alone does not switch to a
    paid API). ``options`` go to the provider (``structured``, ``timeout_s``, ``api_key``,
    ``n_threads``, ``n_ctx``, ``on_mismatch``, ...).
    """
    spec = (spec or os.environ.get("CENTAUR_LLM") or "local").strip()
    if spec.startswith(("http://", "https://")):  # a bare server URL: OpenAI-compatible
        spec = "openai@" + spec
    kind, _, rest = spec.partition(":")
    if "@" in kind and kind.split("@", 1)[0] in ("openai", "anthropic"):
        kind, url = kind.split("@", 1)
        rest = "@" + url + (":" + rest if rest else "")
    kind = kind.lower()
    if kind == "local":
        from centaur_hpo.llm.local import LocalProvider

        return LocalProvider(rest or None, **options)
    if kind in ("openai", "anthropic"):
        model, url = _split_url(rest)
        if rest.startswith("@"):
            model, url = "", rest[1:]
        cls: type[Provider]
        from centaur_hpo.llm.providers import AnthropicProvider, OpenAIProvider

        cls = OpenAIProvider if kind == "openai" else AnthropicProvider
        return cls(model or None, url or options.pop("base_url", None), **options)  # type: ignore[call-arg]
    if kind == "replay":
        if not rest:
            raise ValueError(
                "replay needs a cassette: replay:PATH.jsonl or replay:STORAGE_URL#STUDY"
            )
        source: str | Path = rest if "://" in rest else Path(rest)
        return ReplayProvider(source, **options)
    raise ValueError(f"unknown LLM spec {spec!r}; use {SPEC_HELP}")


_CLIENT_OPTIONS = (
    "retries",
    "backoff_s",
    "backoff_max_s",
    "reasks",
    "max_failed_calls",
    "max_tokens",
    "sleep",
)


def make_client(spec: str | Provider | LLMClient | None = None, **options: Any) -> LLMClient:
    """An :class:`LLMClient` for a spec string, a provider, or a client (returned as is).

    Client options (``retries``, ``backoff_s``, ``backoff_max_s``, ``reasks``,
    ``max_failed_calls``, ``max_tokens``) are split from provider options.
    """
    if isinstance(spec, LLMClient):
        return spec
    client_opts = {k: options.pop(k) for k in list(options) if k in _CLIENT_OPTIONS}
    provider = spec if isinstance(spec, Provider) else make_provider(spec, **options)
    return LLMClient(provider, **client_opts)
