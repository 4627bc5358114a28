"""The embedded model (SmolLM2-135M through llama.cpp): constrained replies, prompt cache, timeout."""

from __future__ import annotations

import pytest
from tests.llm.helpers import mixed_space

from centaur_hpo.llm import LLMClient, TransportError
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.prompt import messages, prefix_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local():  # type: ignore[no-untyped-def]
    pytest.importorskip("llama_cpp")
    from centaur_hpo.llm.local import LocalProvider

    return LocalProvider()


def test_constrained_replies_are_valid_and_the_prefix_is_cached(local) -> None:  # type: ignore[no-untyped-def]
    space = mixed_space()
    client = LLMClient(local)
    prefix = prefix_text(space, "Tune a small model.", "CPU, 2 cores")
    for i, body in enumerate(
        [
            "No trial has run yet. Propose a configuration.",
            "One trial ran and failed (oom). Propose another configuration.",
        ]
    ):
        config, notes = client.ask_config(messages(prefix, body), space, temperature=0.7, seed=i)
        assert space.validate(config) == [] and notes == []
    first, second = list(client.records)
    assert first["status"] == second["status"] == "ok"
    assert first["tokens_in"] > 200 and second["tokens_out"] > 20
    # The second prompt shares the prefix: llama.cpp evaluated only the new part.
    assert second["cached_tokens"] > 0.7 * first["tokens_in"]
    assert local.context_window == 8192 and local.count_tokens("0.123") == 5  # a token per digit


def test_timeout_is_a_transport_error(local) -> None:  # type: ignore[no-untyped-def]
    from centaur_hpo.llm.local import LocalProvider

    slow = LocalProvider(local.path, timeout_s=0.0)
    with pytest.raises(TransportError, match="did not finish within 0 s"):
        slow.complete(
            [{"role": "user", "content": "Say hello."}],
            constraint=config_constraint(mixed_space()),
            max_tokens=64,
        )
