"""The LLM layer: providers behind one interface, reply formats built from the search space,
tolerant parsing with strict validation, a client with a failure policy, and per-call provenance.

Typical use by a method::

    from centaur_hpo.llm import make_client

    llm = make_client("openai:Qwen/Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1")
    config, notes = llm.ask_config(messages, space, study=study, trial=trial, method="llm_agent")

``make_client()`` with no spec uses ``CENTAUR_LLM`` from the environment, else the embedded
SmolLM2-135M (offline; it makes the LLM methods *run* anywhere, it is not a good optimizer).
"""

from centaur_hpo.llm.base import (
    Constraint,
    LLMCallFailed,
    LLMError,
    LLMUnavailable,
    Message,
    ParseError,
    Provider,
    Reply,
    RequestRejected,
    TransportError,
    redact,
)
from centaur_hpo.llm.client import SPEC_HELP, LLMClient, make_client, make_provider
from centaur_hpo.llm.grammar import (
    config_constraint,
    config_grammar,
    config_schema,
    key_order,
    sample_gbnf,
)
from centaur_hpo.llm.parse import parse_config, parse_configs, parse_scores
from centaur_hpo.llm.providers import AnthropicProvider, OpenAIProvider, ScriptedProvider
from centaur_hpo.llm.records import (
    CassetteMismatch,
    ReplayProvider,
    export_cassette,
    llm_calls,
    llm_usage,
    load_cassette,
)

__all__ = [
    "SPEC_HELP",
    "AnthropicProvider",
    "CassetteMismatch",
    "Constraint",
    "LLMCallFailed",
    "LLMClient",
    "LLMError",
    "LLMUnavailable",
    "Message",
    "OpenAIProvider",
    "ParseError",
    "Provider",
    "Reply",
    "ReplayProvider",
    "RequestRejected",
    "ScriptedProvider",
    "TransportError",
    "config_constraint",
    "config_grammar",
    "config_schema",
    "export_cassette",
    "key_order",
    "llm_calls",
    "llm_usage",
    "load_cassette",
    "make_client",
    "make_provider",
    "parse_config",
    "parse_configs",
    "parse_scores",
    "redact",
    "sample_gbnf",
]
