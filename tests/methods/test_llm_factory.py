"""Building the LLM methods by name: LLM specs, client and provider options, opt-in fallback."""

from __future__ import annotations

import pytest
from tests.llm.helpers import small_space

from centaur_hpo.llm import LLMClient, ScriptedProvider
from centaur_hpo.methods import make_sampler
from centaur_hpo.methods.base import RepairingSampler
from centaur_hpo.methods.llambo import LlamboSampler
from centaur_hpo.methods.llm_agent import LLMAgentSampler
from centaur_hpo.methods.warm_start import LLMWarmStartSampler

SPACE = small_space()


def scripted() -> LLMClient:
    return LLMClient(ScriptedProvider([]))


def test_each_method_with_a_client_provider_or_spec() -> None:
    client = scripted()
    agent = make_sampler("llm_agent", SPACE, 3, llm=client, history=5)
    assert isinstance(agent, LLMAgentSampler) and agent.llm is client and agent.history == 5
    assert agent.seed == 3 and agent.fallback is None  # no fallback unless asked for
    llambo = make_sampler("llambo", SPACE, 0, llm=ScriptedProvider([]), n_candidates=4)
    assert isinstance(llambo, LlamboSampler) and llambo.n_candidates == 4
    warm = make_sampler(
        "llm_warm_start",
        SPACE,
        0,
        llm="openai:m@http://127.0.0.1:9/v1",
        n_warm=2,
        retries=0,
        max_failed_calls=5,
        timeout_s=3,
    )
    assert isinstance(warm, LLMWarmStartSampler) and warm.llm.retries == 0
    assert warm.llm.max_failed_calls == 5 and warm.llm.provider.timeout_s == 3


def test_fallback_is_opt_in() -> None:
    agent = make_sampler("llm_agent", SPACE, 0, llm=scripted(), fallback=True)
    assert isinstance(agent.fallback, RepairingSampler)  # uniform random by default
    assert make_sampler("llm_agent", SPACE, 0, llm=scripted(), fallback="false").fallback is None
    tpe = make_sampler("llambo", SPACE, 0, llm=scripted(), fallback="tpe").fallback
    assert type(tpe.base).__name__ == "TPESampler"
    warm = make_sampler("llm_warm_start", SPACE, 0, llm=scripted(), fallback=True)
    assert warm.fallback == "refiner"
    with pytest.raises(ValueError, match="fallback='smac'"):
        make_sampler("llm_agent", SPACE, 0, llm=scripted(), fallback="smac")


def test_centaur_and_code_agent() -> None:
    centaur = make_sampler("centaur", SPACE, 0, llm=scripted(), fallback=True)
    assert type(centaur).__name__ == "CentaurSampler" and centaur.fallback is True
    with pytest.raises(ValueError, match="edits the training script"):
        make_sampler("code_agent", SPACE, 0)


def test_option_errors_name_the_valid_options() -> None:
    with pytest.raises(ValueError, match="n_candidates"):
        make_sampler("llambo", SPACE, 0, llm=scripted(), n_candidate=3)
    with pytest.raises(ValueError, match="configure a provider"):
        make_sampler("llm_agent", SPACE, 0, llm=scripted(), timeout_s=3)
