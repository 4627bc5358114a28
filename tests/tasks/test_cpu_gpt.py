"""The built-in ``cpu-gpt`` task: its fixed data/evaluation and real training runs.

The training tests run the real ``train.py`` through the real injection and trial runner
(:class:`centaur_hpo.evaluate.ScriptEvaluator`), with budgets of one to two seconds and a tiny
model, so the outcome classes are the ones a study would record. The trusted evaluator
(``evaluate.py``, for the code-editing agent) is tested in-process on checkpoints built here, as
a real subprocess on poisoned ones, and end to end under the code agent in the real sandbox.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from centaur_hpo.evaluate import ScriptEvaluator
from centaur_hpo.metrics import parse_metrics
from centaur_hpo.runner import TrialSpec, build_env, parse_bytes, run_trial
from centaur_hpo.sandbox import probe
from centaur_hpo.script import find_knobs
from centaur_hpo.spaces import space_for_script
from centaur_hpo.tasks.registry import code_agent_defaults, script_task

TASK = Path(__file__).resolve().parents[2] / "src" / "centaur_hpo" / "tasks" / "cpu_gpt"

#: A model small enough that a one-second run takes a few dozen steps on a busy CPU.
TINY = dict(DEPTH=1, ASPECT_RATIO=32, HEAD_DIM=32, DEVICE_BATCH_SIZE=4, TOTAL_BATCH_SIZE=512)


@pytest.fixture
def prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """prepare.py loaded as a stand-alone module (as a trial does), caching under tmp_path."""
    monkeypatch.setenv("CENTAUR_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("cpu_gpt_prepare", TASK / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def trusted(
    prepare: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, ModuleType]]:
    """(model.py, evaluate.py) imported from the package, as the evaluator process imports them:
    as top-level ``model``/``prepare`` modules. Both names are removed again afterwards, so no
    other test sees this folder's ``prepare``."""
    names = ("model", "prepare", "evaluate")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    monkeypatch.syspath_prepend(str(TASK))
    try:
        model = importlib.import_module("model")
        evaluate = importlib.import_module("evaluate")
        assert Path(evaluate.__file__).parent == TASK and Path(model.__file__).parent == TASK
        yield model, evaluate
    finally:
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


# -- fixed data and evaluation ------------------------------------------------------------------
def test_data_builds_and_split_is_disjoint(prepare: ModuleType, tmp_path: Path) -> None:
    folder = prepare.prepare_data()
    assert folder.is_relative_to(tmp_path / "cache")
    train, val = prepare.load_split("train"), prepare.load_split("val")
    assert train.dtype == torch.uint8 and val.dtype == torch.uint8
    assert len(train) > 100_000 and len(val) > prepare.EVAL_TOKENS
    # The split partitions the corpus by position: together they are exactly the corpus.
    corpus = prepare.corpus_text().encode("utf-8")
    assert len(train) + len(val) == len(corpus)
    t, v = prepare.split_corpus(corpus)
    assert bytes(train.tolist()) == t and bytes(val.tolist()) == v
    assert len(v) / len(corpus) == pytest.approx(0.1, abs=0.02)
    # De-duplication: few validation passages also occur verbatim in training.
    windows = [v[i : i + 64] for i in range(0, len(v) - 64, 64)]
    assert sum(w in t for w in windows) / len(windows) < 0.1
    # A second call reuses the cache.
    mtime = (folder / "val.bin").stat().st_mtime_ns
    assert prepare.prepare_data() == folder
    assert (folder / "val.bin").stat().st_mtime_ns == mtime


def test_eval_windows_cover_the_validation_split(prepare: ModuleType) -> None:
    n = len(prepare.load_split("val"))
    starts = prepare.eval_starts(n)
    assert len(starts) * prepare.MAX_SEQ_LEN == prepare.EVAL_TOKENS
    assert torch.all(starts[1:] - starts[:-1] >= prepare.MAX_SEQ_LEN)  # no overlap
    assert int(starts[-1]) + prepare.MAX_SEQ_LEN + 1 <= n
    assert int(starts[-1]) > 0.9 * n  # spread to the end, not a prefix
    with pytest.raises(ValueError, match="does not fit"):
        prepare.eval_starts(n, eval_tokens=n * 2)


def test_tokenizer_round_trips(prepare: ModuleType) -> None:
    text = "def f(x):\n    return x ** 2  # naïve — ünïcödé ✓"
    tokens = prepare.encode(text)
    assert all(0 <= t < prepare.VOCAB_SIZE for t in tokens)
    assert len(tokens) == len(text.encode("utf-8"))
    assert prepare.decode(tokens) == text
    assert prepare.decode(torch.tensor(tokens)) == text


def test_dataloader_is_seeded(prepare: ModuleType) -> None:
    a = next(prepare.make_dataloader("train", 4, seed=3))
    b = next(prepare.make_dataloader("train", 4, seed=3))
    c = next(prepare.make_dataloader("train", 4, seed=4))
    x, y = a
    assert x.shape == y.shape == (4, prepare.MAX_SEQ_LEN) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the next bytes
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_uniform_model_scores_eight_bits(prepare: ModuleType) -> None:
    def uniform(x: torch.Tensor, y: torch.Tensor, reduction: str = "none") -> torch.Tensor:
        logits = torch.zeros(*x.shape, prepare.VOCAB_SIZE)
        return torch.nn.functional.cross_entropy(
            logits.view(-1, prepare.VOCAB_SIZE), y.reshape(-1), reduction="none"
        ).view(y.shape)

    assert prepare.evaluate_bpb(uniform, batch_size=50) == pytest.approx(8.0, abs=1e-6)


# -- the space file -----------------------------------------------------------------------------
def test_registry_points_at_the_task() -> None:
    script, space = script_task("cpu-gpt")
    assert script == TASK / "train.py" and space == TASK / "space.toml"
    assert script.is_file() and space.is_file() and (TASK / "prepare.py").is_file()
    with pytest.raises(ValueError, match="built-in tasks: cpu-gpt"):
        script_task("gpu-gpt")
    # The code agent's defaults: the trusted evaluator next to the script, and the contract.
    defaults = code_agent_defaults("cpu-gpt")
    assert Path(defaults["evaluator"]) == TASK / "evaluate.py"
    assert Path(defaults["evaluator"]).is_file()
    assert "save_checkpoint" in defaults["contract"] and "model.py" in defaults["contract"]
    with pytest.raises(ValueError, match="built-in tasks"):
        code_agent_defaults("gpu-gpt")


def test_space_file_has_the_papers_14_knobs_and_constraints() -> None:
    script, space_file = script_task("cpu-gpt")
    space = space_for_script(script, space_file, None)
    assert sorted(space.names) == sorted(
        [
            "DEPTH",
            "ASPECT_RATIO",
            "HEAD_DIM",
            "DEVICE_BATCH_SIZE",
            "TOTAL_BATCH_SIZE",
            "EMBEDDING_LR",
            "UNEMBEDDING_LR",
            "MATRIX_LR",
            "SCALAR_LR",
            "WEIGHT_DECAY",
            "WARMUP_RATIO",
            "WARMDOWN_RATIO",
            "FINAL_LR_FRAC",
            "WINDOW_PATTERN",
        ]
    )
    assert not space.fixed  # every knob of train.py is tuned
    for name in ("HEAD_DIM", "DEVICE_BATCH_SIZE", "TOTAL_BATCH_SIZE"):
        assert space.params[name].power_of_two
    # MAX_SEQ_LEN in the space file is the one prepare.py really uses.
    prep = find_knobs((TASK / "prepare.py").read_text())
    assert space.constants["MAX_SEQ_LEN"] == prep["MAX_SEQ_LEN"].value
    # The default is valid as written, and repair makes any batch pair divisible.
    assert space.validate(space.default_config()) == []
    assert space.default_config() == {n: p.default for n, p in space.params.items()}
    fixed = space.repair(
        {**space.default_config(), "DEVICE_BATCH_SIZE": 128, "TOTAL_BATCH_SIZE": 1024}
    )
    assert fixed["TOTAL_BATCH_SIZE"] % (128 * space.constants["MAX_SEQ_LEN"]) == 0
    assert space.metric == "val_bpb" and space.direction == "minimize"
    assert space.trial_budget == 30 and parse_bytes(space.memory_cap) is not None
    assert space.failure_value is not None and space.failure_value > 8.0  # worse than uniform


# -- real training runs through the runner ------------------------------------------------------
def _evaluator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: float) -> ScriptEvaluator:
    monkeypatch.setenv("CENTAUR_CACHE_DIR", str(tmp_path / "cache"))
    # One thread: on a CPU shared with other jobs, two spinning threads can stall a tiny model.
    monkeypatch.setenv("CENTAUR_THREADS", "1")
    script, space_file = script_task("cpu-gpt")
    space = space_for_script(script, space_file, None)
    return ScriptEvaluator(
        script=script,
        space=space,
        run_dir=tmp_path / "run",
        trial_budget=budget,
        timeout=120,
        memory_cap=parse_bytes(space.memory_cap),
    )


def _config(ev: ScriptEvaluator, **knobs: Any) -> dict[str, Any]:
    """The default configuration with some knobs replaced (not repaired: tests pick exact values)."""
    return {**{n: p.default for n, p in ev.space.params.items()}, **knobs}


@pytest.mark.slow
def test_short_run_prints_the_summary_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trusted: tuple[ModuleType, ModuleType]
) -> None:
    ev = _evaluator(tmp_path, monkeypatch, budget=3)
    monkeypatch.setenv("CENTAUR_SAVE_CHECKPOINT", "1")  # as the code-editing agent's harness does
    result = ev.evaluate(0, _config(ev, **TINY))
    assert result.outcome == "ok", result.error
    stdout = Path(result.stdout_path).read_text()
    metrics = parse_metrics(stdout)
    assert metrics == result.metrics
    assert 0 < result.value < 8.0  # learned something: better than uniform guessing
    assert result.value == metrics["val_bpb"]
    assert metrics["num_steps"] >= 2 and metrics["depth"] == 1
    assert "threads 1" in stdout
    # The per-trial budget reached the script: it trained for the budget, within one step.
    assert 3.0 <= metrics["training_seconds"] < 3.0 + 3.0
    assert result.time_training == metrics["training_seconds"]
    for key in ("total_seconds", "peak_memory_mb", "peak_vm_mb", "eval_seconds", "num_params_M"):
        assert isinstance(metrics[key], float), key
    # ... and its TIME_BUDGET: the trial's prepare.py is a copy with the budget written in,
    # while the user's file is untouched.
    trial_prepare = Path(result.stdout_path).parent / "prepare.py"
    assert not trial_prepare.is_symlink()
    assert find_knobs(trial_prepare.read_text())["TIME_BUDGET"].value == 3.0
    assert find_knobs((TASK / "prepare.py").read_text())["TIME_BUDGET"].value == 30.0
    # The run saved its weights and shape knobs; the trusted evaluation of them gives the
    # val_bpb the script printed (same weights, same windows; only the batching differs).
    model, evaluate = trusted
    _, shape = model.load_checkpoint(trial_prepare.parent / "model.pt")
    assert shape == {k: _config(ev, **TINY)[k] for k in model.SHAPE_KNOBS}
    scored = evaluate.evaluate(trial_prepare.parent)
    assert scored["val_bpb"] == pytest.approx(result.value, abs=1e-5)
    assert scored["num_params_M"] == pytest.approx(metrics["num_params_M"], abs=1e-3)


@pytest.mark.slow
def test_time_budget_constant_alone_sets_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the environment variable the script falls back to prepare.TIME_BUDGET."""
    ev = _evaluator(tmp_path, monkeypatch, budget=1)
    trial_dir = ev.prepare(0, _config(ev, **TINY))  # writes TIME_BUDGET = 1.0 into the copy
    monkeypatch.delenv("CENTAUR_TRIAL_BUDGET", raising=False)
    spec = TrialSpec(command=[sys.executable, "train.py"], trial_dir=trial_dir, timeout=120)
    assert "CENTAUR_TRIAL_BUDGET" not in build_env(spec)
    result = run_trial(spec)
    assert result.outcome == "ok", result.error
    assert 1.0 <= result.metrics["training_seconds"] < 1.0 + 3.0
    assert "budget 1s" in Path(result.stdout_path).read_text()
    # Ordinary tuning keeps no checkpoint (only the code-editing agent's harness asks for one).
    assert not (trial_dir / "model.pt").exists()


@pytest.mark.slow
def test_largest_models_run_out_of_memory_under_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ev = _evaluator(tmp_path, monkeypatch, budget=2)
    top = {n: int(p.high) for n, p in ev.space.params.items() if p.type == "int"}
    config = ev.space.repair(_config(ev, **top))
    assert config["DEVICE_BATCH_SIZE"] == 128 and config["DEPTH"] == 8
    result = ev.evaluate(0, config)
    assert result.outcome == "oom", (result.outcome, result.error)
    assert re.search(r"can't allocate memory|MemoryError", result.error or "")
    assert "val_bpb" not in result.metrics


@pytest.mark.slow
def test_exploding_loss_prints_fail_and_is_diverged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ev = _evaluator(tmp_path, monkeypatch, budget=30)
    # Far beyond any learning rate in the space: the residual scalars swing wildly at once.
    config = _config(ev, **TINY, SCALAR_LR=1000.0, UNEMBEDDING_LR=5.0, WARMUP_RATIO=0.0)
    result = ev.evaluate(0, config)
    assert result.outcome == "diverged", (result.outcome, result.error)
    assert result.exit_code == 1
    stdout = Path(result.stdout_path).read_text()
    assert stdout.splitlines()[-1] == "FAIL" and "---" not in stdout
    assert "smoothed training loss" in Path(result.stderr_path).read_text()
    assert result.time_wall < 25  # it stopped at the explosion, not at the end of the budget


# -- the trusted evaluator ---------------------------------------------------------------------
SMALL = {"DEPTH": 2, "ASPECT_RATIO": 16, "HEAD_DIM": 16, "WINDOW_PATTERN": "SL"}


def test_checkpoint_round_trips_and_bad_ones_are_rejected(
    tmp_path: Path, trusted: tuple[ModuleType, ModuleType]
) -> None:
    model, _ = trusted
    torch.manual_seed(0)
    net = model.build_model(SMALL)
    path = tmp_path / "model.pt"
    model.save_checkpoint(path, net, SMALL)
    loaded, shape = model.load_checkpoint(path)
    assert shape == SMALL and not loaded.training
    x = torch.randint(0, 256, (2, 16))
    assert torch.equal(loaded(x), net.eval()(x))

    def rejected(payload: Any, match: str) -> None:
        torch.save(payload, path)
        with pytest.raises(model.CheckpointError, match=match):
            model.load_checkpoint(path)

    good = torch.load(path, weights_only=True)
    state = good["state_dict"]
    # Poisoned weights.
    nan = {**state, "lm_head.weight": state["lm_head.weight"].clone().fill_(float("nan"))}
    rejected({**good, "state_dict": nan}, r"lm_head.weight holds NaN")
    # An edited train.py that changed the architecture: a new tensor, a dropped one, a reshaped one.
    rejected(
        {**good, "state_dict": {**state, "blocks.0.mlp.gate.weight": torch.zeros(4, 4)}},
        r"do not fit the task's architecture.*unexpected \['blocks.0.mlp.gate.weight'\]"
        r".*not its architecture",
    )
    rejected(
        {**good, "state_dict": {k: v for k, v in state.items() if k != "x0_lambdas"}},
        r"missing \['x0_lambdas'\]",
    )
    rejected(
        {**good, "state_dict": {**state, "wte.weight": torch.zeros(256, 48)}},
        r"wrong shape \['wte.weight \(256, 48\) != \(256, 32\)'\]",
    )
    # The knobs must describe the weights, and be knobs.
    rejected({**good, "shape": {**SMALL, "DEPTH": 3}}, r"missing \['blocks.2")
    rejected({**good, "shape": {**SMALL, "WINDOW_PATTERN": "SX"}}, "string of S and L")
    rejected({**good, "shape": {**SMALL, "DEPTH": 10**9}}, "integer in 1..4096")
    rejected({**good, "shape": {"DEPTH": 2}}, "exactly")
    rejected({**good, "format": "other/1"}, "not a cpu-gpt-checkpoint/1 checkpoint")
    # A pickled module is code, not tensors: weights_only refuses it.
    rejected(net, "not a weights-only PyTorch checkpoint")
    # No file, or a link to one elsewhere.
    path.unlink()
    with pytest.raises(model.CheckpointError, match="no checkpoint file"):
        model.load_checkpoint(path)
    other = tmp_path / "elsewhere.pt"
    model.save_checkpoint(other, net, SMALL)
    path.symlink_to(other)
    with pytest.raises(model.CheckpointError, match="no checkpoint file"):
        model.load_checkpoint(path)


def test_causality_check_rejects_a_model_that_looks_ahead(
    trusted: tuple[ModuleType, ModuleType],
) -> None:
    model, evaluate = trusted
    torch.manual_seed(0)
    honest = model.build_model(SMALL).eval()
    # Give the blocks non-zero outputs, so attention (the only place positions mix) matters.
    with torch.no_grad():
        for p in honest.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = evaluate.sample_windows()
    assert x.shape == (4, model.MAX_SEQ_LEN)
    evaluate.check_causal(honest, x)

    class Peeking(torch.nn.Module):
        """The honest model plus a little of the mean embedding of the whole window."""

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            future = honest.lm_head(honest.wte(idx).mean(dim=1, keepdim=True))
            return honest(idx) + 0.01 * future

    with pytest.raises(model.CheckpointError, match="not causal.*position 1 on"):
        evaluate.check_causal(Peeking(), x)

    class Broken(torch.nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return honest(idx)[..., :255]

    with pytest.raises(model.CheckpointError, match=r"shape \(4, 128, 255\)"):
        evaluate.check_causal(Broken(), x)


@pytest.mark.slow
def test_evaluator_process_rejects_poisoned_and_missing_checkpoints(
    tmp_path: Path, trusted: tuple[ModuleType, ModuleType]
) -> None:
    """The evaluator as the code agent runs it: a separate process, given only the folder."""
    model, _ = trusted
    net = model.build_model(SMALL)
    with torch.no_grad():
        net.blocks[0].attn.q.weight[0, 0] = float("inf")
    work = tmp_path / "work"
    work.mkdir()
    model.save_checkpoint(work / "model.pt", net, SMALL)
    # A trial's own prepare.py/model.py in the folder is never imported by the evaluator.
    (work / "model.py").write_text("raise SystemExit('the trial copy was imported')\n")
    (work / "prepare.py").write_text("raise SystemExit('the trial copy was imported')\n")
    for folder, message in (
        (work, "weight blocks.0.attn.q.weight holds NaN or infinite values"),
        (tmp_path, "no checkpoint file at"),
    ):
        run = subprocess.run(
            [sys.executable, str(TASK / "evaluate.py"), str(folder)],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 1, run.stderr
        assert f"evaluation failed: {message}" in run.stderr
        assert "---" not in run.stdout and "val_bpb" not in run.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    probe().bwrap is None,
    reason="bubblewrap is not usable here (scripts/install-sandbox.sh installs it)",
)
def test_code_agent_runs_on_the_task_with_its_trusted_evaluator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prepare: ModuleType
) -> None:
    """``tune(task="cpu-gpt", method="code_agent")`` with no evaluator option uses the task's:
    the baseline's trusted value matches its own summary block, and an edit that prints a fake
    val_bpb is recorded with the evaluator's value, the fake one only as a claim."""
    import optuna

    from centaur_hpo.api import tune
    from centaur_hpo.llm import ScriptedProvider, make_client
    from centaur_hpo.records import STUDY_INFO_KEY, get_study_attr

    prepare.prepare_data()  # the sandbox sees the cache read-only: build it first
    monkeypatch.setenv("CENTAUR_THREADS", "1")
    script, _ = script_task("cpu-gpt")
    original = script.read_text()
    summary_line = 'print(f"val_bpb:          {val_bpb:.6f}")'
    assert summary_line in original
    lying = original.replace(summary_line, 'print("val_bpb:          0.000001")')
    provider = ScriptedProvider([f"Report a better number.\n```python\n{lying}```\n"])
    result = tune(
        task="cpu-gpt",
        method="code_agent",
        n_trials=2,
        trial_budget=1.0,
        run_dir=tmp_path / "runs",
        llm=make_client(provider, reasks=0),
        method_options={"baseline_repeats": 1, "margin": 1e-4},
        progress=lambda s: None,
    )
    study = optuna.load_study(study_name=result.study_name, storage=result.storage)
    info = json.loads(get_study_attr(study, STUDY_INFO_KEY))
    assert info["code_agent"]["evaluator"] == str(TASK / "evaluate.py")
    assert info["evaluator"]["sandbox"]["mode"] == "strict"
    base, edit = study.get_trials()
    assert [t.user_attrs["outcome"] for t in (base, edit)] == ["ok", "ok"], [
        t.user_attrs.get("error") for t in (base, edit)
    ]
    for t in (base, edit):
        m = t.user_attrs["metrics"]
        # The value is what the evaluator printed, and a real score of a trained model.
        assert t.user_attrs["value"] == m["val_bpb"]
        assert 0.5 < m["val_bpb"] < 8.5
        assert m["num_params_M"] == pytest.approx(0.852, abs=1e-3)  # the default model
        assert (tmp_path / "runs" / result.study_name / "trials" / f"{t.number:05d}").is_dir()
    # train -> evaluate: the unedited script's own summary block agrees with the evaluator.
    bm = base.user_attrs["metrics"]
    assert bm["claimed_val_bpb"] == pytest.approx(bm["val_bpb"], abs=1e-5)
    assert bm["claim_mismatch"] is False
    # The lying edit: its printout is only a claim; its value is the evaluator's.
    em = edit.user_attrs["metrics"]
    assert em["claimed_val_bpb"] == pytest.approx(1e-6) and em["claim_mismatch"] is True
    assert edit.user_attrs["value"] > 0.5
    assert edit.user_attrs["code_kept"] is False or edit.user_attrs["value"] < bm["val_bpb"]
    # The LLM was told the task's rule about the architecture and the checkpoint.
    system = provider.calls[0][0]["content"]
    assert "architecture is fixed by model.py" in system and "save_checkpoint" in system


# -- the shipped trial log ----------------------------------------------------------------------
def test_trial_log_matches_the_space() -> None:
    """trials.csv (studies this project ran on the task) holds only configurations the space
    allows, one known outcome per trial, and repeats of the default for a noise estimate."""
    import csv

    from centaur_hpo.runner import OUTCOMES

    script, space_file = script_task("cpu-gpt")
    space = space_for_script(script, space_file, None)
    with (TASK / "trials.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 70
    assert {"value", "outcome", "time_training", "time_wall", "study"} <= set(rows[0])
    default = space.default_config()
    n_default = 0
    for row in rows:
        assert row["outcome"] in OUTCOMES, row["outcome"]
        config = {}
        for name, p in space.params.items():
            text = row[f"param:{name}"]
            config[name] = text if p.type == "categorical" else float(text)
        config = space.coerce(config)
        assert space.validate(config) == [], (row["number"], space.validate(config))
        if row["outcome"] == "ok":
            assert 0 < float(row["value"]) < 8.8
        else:
            assert row["value"] == ""
        n_default += config == default
    assert n_default >= 3
    outcomes = {row["outcome"] for row in rows}
    assert {"ok", "diverged"} <= outcomes
