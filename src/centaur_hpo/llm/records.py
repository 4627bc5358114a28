"""Provenance of every LLM call, stored in the Optuna study, and replay from a recording.

Every request the client sends - successful, invalid or failed - becomes one record, a JSON
object in the study's system attributes under ``centaur:llm_call:{seq:06d}``:

``seq`` study-level sequence number; ``call`` the client call it belongs to (a call is one
request plus its retries and re-asks, ``attempt`` numbers them); ``trial`` the trial number;
``method``, ``purpose`` (``propose``, ``candidates``, ``surrogate``, ``warm_start``, ...);
``provider``, ``model``, ``endpoint`` (never a key); ``messages`` and ``prompt_hash``;
``constraint`` (name and digest of the grammar/schema); ``reply`` (the raw text, always kept);
``parsed`` and ``notes`` (what was read, repaired or rejected); ``tokens_in``, ``tokens_out``,
``cached_tokens``, ``latency_s``; ``status`` (``ok``, ``invalid``, ``transport_error``,
``rejected``, ``skipped``) and ``error``.

Sequence numbers are allocated per process: the first record for a study scans the stored keys
once, later ones count on. Two processes writing LLM records into one study at the same moment
could pick the same number (Optuna has no atomic counter); run LLM methods with one worker per
study, or give each worker its own study.

A *cassette* is a JSONL file of such records (:func:`export_cassette`), or another study's
records. :class:`ReplayProvider` answers from it in order, so a study re-runs exactly without the
LLM; it checks each prompt's hash against the recording and warns or raises on a mismatch.
"""

from __future__ import annotations

import json
import threading
import warnings
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from optuna.study import Study

from centaur_hpo.llm.base import (
    Constraint,
    LLMError,
    Message,
    Provider,
    Reply,
    RequestRejected,
    TransportError,
    prompt_hash,
)

CALL_KEY = "centaur:llm_call:"
# storage object -> {study id: next free sequence number}; weak keys, so a new storage object that
# happens to get the address of a dead one never inherits its counters.
_SEQ: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()
_SEQ_LOCK = threading.Lock()


def next_seq(study: Study) -> int:
    """The next free record number of ``study`` (scans the storage once per process)."""
    storage = study._storage
    with _SEQ_LOCK:
        counters = _SEQ.setdefault(storage, {})
        if study._study_id not in counters:
            attrs = storage.get_study_system_attrs(study._study_id)
            used = [int(k[len(CALL_KEY) :]) for k in attrs if k.startswith(CALL_KEY)]
            counters[study._study_id] = max(used, default=-1) + 1
        seq = counters[study._study_id]
        counters[study._study_id] = seq + 1
        return seq


def store_record(study: Study, record: dict[str, Any]) -> dict[str, Any]:
    """Give ``record`` a sequence number and write it into the study."""
    record["seq"] = next_seq(study)
    study._storage.set_study_system_attr(
        study._study_id,
        f"{CALL_KEY}{record['seq']:06d}",
        json.loads(json.dumps(record, default=str)),
    )
    return record


def llm_calls(study: Study) -> list[dict[str, Any]]:
    """Every LLM call record of ``study``, in sequence order."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    recs = [v for k, v in attrs.items() if k.startswith(CALL_KEY)]
    return sorted(recs, key=lambda r: r.get("seq", 0))


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Token and latency totals of ``records`` (see :func:`llm_usage`)."""
    out: dict[str, Any] = {
        "requests": 0,
        "calls": 0,
        "failed_calls": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cached_tokens": 0,
        "latency_s": 0.0,
        "by_method": {},
        "by_status": {},
    }
    calls: dict[Any, bool] = {}
    for r in records:
        out["requests"] += 1
        for k in ("tokens_in", "tokens_out", "cached_tokens"):
            out[k] += int(r.get(k) or 0)
        out["latency_s"] += float(r.get("latency_s") or 0.0)
        status = r.get("status", "?")
        out["by_status"][status] = out["by_status"].get(status, 0) + 1
        m = out["by_method"].setdefault(
            r.get("method") or "?",
            {"requests": 0, "tokens_in": 0, "tokens_out": 0, "latency_s": 0.0},
        )
        m["requests"] += 1
        m["tokens_in"] += int(r.get("tokens_in") or 0)
        m["tokens_out"] += int(r.get("tokens_out") or 0)
        m["latency_s"] += float(r.get("latency_s") or 0.0)
        cid = r.get("call")
        calls[cid] = calls.get(cid, False) or status == "ok"
    out["calls"] = len(calls)
    out["failed_calls"] = sum(1 for ok in calls.values() if not ok)
    out["latency_s"] = round(out["latency_s"], 3)
    return out


def llm_usage(study: Study) -> dict[str, Any]:
    """LLM cost of a study: requests, calls, failed calls, tokens in/out/cached and latency.

    This is inference cost only; training time is accounted by the study loop, separately.
    """
    return summarize(llm_calls(study))


def export_cassette(study: Study, path: str | Path) -> Path:
    """Write the study's LLM records as a JSONL cassette that :class:`ReplayProvider` reads."""
    path = Path(path)
    with path.open("w") as f:
        for rec in llm_calls(study):
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def load_cassette(source: str | Path | Study | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records from a JSONL file, a study, or a list; ``storage_url#study_name`` opens a study."""
    if isinstance(source, Study):
        return llm_calls(source)
    if isinstance(source, str | Path):
        text = str(source)
        if "://" in text and "#" in text:
            import optuna

            url, name = text.rsplit("#", 1)
            return llm_calls(optuna.load_study(study_name=name, storage=url))
        with Path(source).open() as f:
            return [json.loads(line) for line in f if line.strip()]
    return list(source)


class CassetteMismatch(LLMError):
    """The replay cannot go on: a prompt differs from the recorded one (``on_mismatch="raise"``)
    or the cassette has no more calls. A :class:`ProposalError`, so the study stops cleanly."""


class ReplayProvider(Provider):
    """Answers from recorded calls, in order, without any model.

    Records with status ``skipped`` (no request was sent) are passed over. A recorded transport
    error or rejection is raised again, so the client's retries replay as they happened.
    ``on_mismatch``: what to do when a prompt's hash differs from the recorded one - ``warn``
    (default), ``raise`` (:class:`CassetteMismatch`) or ``ignore``.

    To rebuild the same prompts, the replay must size history windows as the recorded model did:
    it reports the recorded context window, counts tokens with the embedded model's tokenizer
    when the recording came from it (loaded vocabulary-only, in well under a second), and says
    ``structured="grammar"`` when the recorded replies were grammar-constrained, so the client
    sizes the reply budget alike.
    """

    kind = "replay"
    realtime = False

    def __init__(
        self,
        source: str | Path | Study | Iterable[dict[str, Any]],
        *,
        on_mismatch: Literal["warn", "raise", "ignore"] = "warn",
    ) -> None:
        records = [r for r in load_cassette(source) if r.get("status") != "skipped"]
        label = str(source) if isinstance(source, str | Path) else "recorded calls"
        model = records[0].get("model", "") if records else ""
        super().__init__(model, f"cassette {label}")
        self.records = records
        self.position = 0
        self.on_mismatch = on_mismatch
        self.mismatches: list[int] = []
        self._context_window = None
        for r in records:
            if r.get("context_window"):
                self._context_window = int(r["context_window"])
                break
        self.recorded_provider = records[0].get("provider") if records else None
        grammar = self.recorded_provider == "local" or any(
            r.get("structured") == "grammar" for r in records[:1]
        )
        self.structured = "grammar" if grammar else "none"
        self._tokenizer: Any = None

    def count_tokens(self, text: str) -> int:
        """Tokens as the recorded model counted them (its tokenizer if it was the local one)."""
        if self.recorded_provider == "local":
            if self._tokenizer is None:
                self._tokenizer = _local_tokenizer(self.model)
            if self._tokenizer is not False:
                return len(self._tokenizer.tokenize(text.encode(), add_bos=False, special=True))
        return super().count_tokens(text)

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
        if self.position >= len(self.records):
            raise CassetteMismatch(
                f"the cassette has no more recorded calls (it holds {len(self.records)}); "
                "the replayed study asks for more LLM calls than the recorded one made"
            )
        rec = self.records[self.position]
        self.position += 1
        want = rec.get("prompt_hash")
        got = prompt_hash(messages)
        if want and want != got:
            self.mismatches.append(int(rec.get("seq", self.position - 1)))
            msg = (
                f"replayed prompt differs from recorded call seq={rec.get('seq')} "
                f"(trial {rec.get('trial')}, {rec.get('purpose')}): hash {got} != {want}"
            )
            if self.on_mismatch == "raise":
                raise CassetteMismatch(msg)
            if self.on_mismatch == "warn":
                warnings.warn(msg, stacklevel=2)
        status = rec.get("status")
        if status == "transport_error":
            raise TransportError(f"(replayed) {rec.get('error')}")
        if status == "rejected":
            raise RequestRejected(f"(replayed) {rec.get('error')}")
        return Reply(
            text=rec.get("reply") or "",
            tokens_in=int(rec.get("tokens_in") or 0),
            tokens_out=int(rec.get("tokens_out") or 0),
            latency_s=0.0,
            model=str(rec.get("model") or ""),
            finish_reason=rec.get("finish_reason"),
            extra={"replayed_seq": rec.get("seq"), "recorded_latency_s": rec.get("latency_s")},
        )


def _local_tokenizer(model_name: str) -> Any:
    """The embedded model's tokenizer (vocabulary only), or False when it is not installed."""
    try:
        from centaur_hpo.llm.local import default_model_path, load_tokenizer

        path = default_model_path()
        tokenizer = load_tokenizer(path)
    except (ImportError, RuntimeError, ValueError):
        return False
    if model_name and path.name != model_name:
        warnings.warn(
            f"the cassette was recorded with {model_name}; counting tokens with {path.name}",
            stacklevel=3,
        )
    return tokenizer
