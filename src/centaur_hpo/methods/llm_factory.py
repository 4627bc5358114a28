"""Build the LLM methods by name: one place that turns ``--llm`` and ``--option`` into a sampler.

``make_sampler`` (in :mod:`centaur_hpo.methods`) routes every LLM method here, so the CLI, the
Python API and the benchmarks resolve the LLM and the options the same way:

* ``llm``: ``None`` (``CENTAUR_LLM`` from the environment, else the embedded SmolLM2), a spec
  string (``openai:MODEL@URL``, ``anthropic:MODEL``, ``local``, ``replay:CASSETTE.jsonl``), a
  :class:`~centaur_hpo.llm.Provider` or an :class:`~centaur_hpo.llm.LLMClient`.
* client options (``retries``, ``reasks``, ``max_failed_calls``, ``backoff_s``, ...) configure the
  failure policy; every other option goes to the method's constructor, and a name it does not
  take is an error listing the ones it does.
* ``fallback`` is opt-in: off unless given. ``True`` picks the method's natural fallback
  (uniform random for ``llm_agent`` and ``llambo``, the refiner for ``llm_warm_start``); a name
  (``random``, ``tpe``, ``cmaes``) or a sampler picks one explicitly.
"""

from __future__ import annotations

import inspect
from typing import Any

from optuna.samplers import BaseSampler

from centaur_hpo.llm.client import LLMClient, make_client
from centaur_hpo.space import SearchSpace

#: Options that configure the client's failure policy rather than the method.
CLIENT_OPTIONS = (
    "retries",
    "backoff_s",
    "backoff_max_s",
    "reasks",
    "max_failed_calls",
    "max_tokens",
)
#: Options that configure the provider (only used when ``llm`` is a spec string or None).
PROVIDER_OPTIONS = (
    "structured",
    "timeout_s",
    "n_threads",
    "n_ctx",
    "on_mismatch",
    "context_window",
)
FALLBACK_NAMES = ("random", "tpe", "cmaes")

CODE_AGENT_HELP = (
    "code_agent edits the training script itself (an unconstrained space), so it is not a "
    "configuration sampler; run it through `centaur tune SCRIPT --method code_agent`"
)


def _is_off(value: Any) -> bool:
    return (
        value is None
        or value is False
        or (
            isinstance(value, str)
            and value.strip().lower() in ("", "0", "false", "no", "none", "off")
        )
    )


def resolve_fallback(name: str, value: Any, space: SearchSpace, seed: int | None) -> Any:
    """The fallback sampler for ``value`` (see the module doc); None when not opted in."""
    if _is_off(value):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes")):
        return (
            "refiner" if name == "llm_warm_start" else resolve_fallback(name, "random", space, seed)
        )
    if isinstance(value, str):
        key = value.strip().lower()
        if key == "refiner" and name == "llm_warm_start":
            return "refiner"
        if key == "random":
            from centaur_hpo.methods.classical import random_sampler

            return random_sampler(space, seed)
        if key == "tpe":
            from centaur_hpo.methods.classical import tpe_sampler

            return tpe_sampler(space, seed)
        if key == "cmaes":
            from centaur_hpo.methods.cmaes import CmaEsSampler

            return CmaEsSampler(space, seed)
        raise ValueError(
            f"fallback={value!r}: use true, {', '.join(FALLBACK_NAMES)}"
            + (", refiner" if name == "llm_warm_start" else "")
            + " or leave it off"
        )
    if isinstance(value, BaseSampler):
        return value
    raise ValueError(f"fallback={value!r} is not a sampler or a sampler name")


def build_client(llm: Any, options: dict[str, Any]) -> LLMClient:
    """The client for ``llm``; client and provider options are taken out of ``options``."""
    client_opts = {k: options.pop(k) for k in list(options) if k in CLIENT_OPTIONS}
    provider_opts = {k: options.pop(k) for k in list(options) if k in PROVIDER_OPTIONS}
    if isinstance(llm, LLMClient):
        for k, v in client_opts.items():
            setattr(llm, k, v)
        if provider_opts:
            raise ValueError(
                f"options {sorted(provider_opts)} configure a provider; pass them when building "
                "the client, not with a ready LLMClient"
            )
        return llm
    if provider_opts and llm is not None and not isinstance(llm, str):
        raise ValueError(f"options {sorted(provider_opts)} need an LLM spec string, not {llm!r}")
    return make_client(llm, **client_opts, **provider_opts)


def _construct(cls: type, space: SearchSpace, seed: int | None, **kwargs: Any) -> BaseSampler:
    accepted = [
        n
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(kwargs) - set(accepted) - {"llm"})
    if unknown:
        raise ValueError(
            f"{cls.name} does not take the option(s) {unknown}; its options are: "
            + ", ".join(sorted(set(accepted) | set(CLIENT_OPTIONS)))
        )
    return cls(space, seed=seed, **kwargs)


def make_llm_sampler(
    name: str, space: SearchSpace, seed: int | None = None, *, llm: Any = None, **options: Any
) -> BaseSampler:
    """The sampler of LLM method ``name`` (``llm_agent``, ``llambo``, ``llm_warm_start``,
    ``centaur``), talking to ``llm`` (see the module doc)."""
    if name == "code_agent":
        raise ValueError(CODE_AGENT_HELP)
    if name not in ("llm_agent", "llambo", "llm_warm_start", "centaur"):
        raise ValueError(f"{name!r} is not an LLM method")
    options = dict(options)
    fallback_opt = options.pop("fallback", None)
    client = build_client(llm, options)
    if name == "centaur":
        from centaur_hpo.methods.centaur import make_centaur_sampler

        if not _is_off(fallback_opt):
            options["fallback"] = fallback_opt
        return make_centaur_sampler(space, seed, llm=client, **options)
    fallback = resolve_fallback(name, fallback_opt, space, seed)
    if name == "llm_agent":
        from centaur_hpo.methods.llm_agent import LLMAgentSampler as cls
    elif name == "llambo":
        from centaur_hpo.methods.llambo import LlamboSampler as cls  # type: ignore[assignment]
    else:
        from centaur_hpo.methods.warm_start import LLMWarmStartSampler as cls  # type: ignore[assignment]
    return _construct(cls, space, seed, llm=client, fallback=fallback, **options)
