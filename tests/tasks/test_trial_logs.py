"""Reading trial logs: every accepted format, and clear rejections of malformed ones."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from tests.tasks import sim_logs

from centaur_hpo.evaluate import FunctionEvaluator
from centaur_hpo.methods import make_sampler
from centaur_hpo.records import export_csv
from centaur_hpo.study import Budget, StudyRunner
from centaur_hpo.tasks import autoresearch_sim as ar
from centaur_hpo.tasks.trial_logs import LogError, read_log, read_logs

pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sim_logs.records(40)


def test_generic_csv_with_space_keeps_outcomes_values_and_times(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    log = read_log(sim_logs.write_csv(tmp_path / "t.csv", rows), space="autoresearch")
    assert len(log) == 40 and log.configs[0] == ar.DEFAULTS
    assert log.outcomes == [r["outcome"] for r in rows]
    assert log.values == [r["value"] for r in rows]
    assert log.times == pytest.approx([r["wall_time"] for r in rows])


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".tsv"])
def test_other_table_formats_read_the_same(tmp_path: Path, rows, suffix: str) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    path = tmp_path / f"t{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"trials": rows}))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    elif suffix == ".parquet":
        pytest.importorskip("pyarrow")
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    log = read_log(path, space="autoresearch")
    assert log.outcomes == [r["outcome"] for r in rows]
    assert log.values == pytest.approx([r["value"] for r in rows])


def test_inferred_space_covers_the_log_and_says_so(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    log = read_log(sim_logs.write_csv(tmp_path / "t.csv", rows))
    sp = log.space
    assert sp.params["MATRIX_LR"].log and sp.params["MATRIX_LR"].type == "float"
    assert sp.params["HEAD_DIM"].power_of_two and sp.params["DEPTH"].type == "int"
    assert sp.params["WINDOW_PATTERN"].type == "categorical"
    assert all(
        sp.validate(c) == [] or "constraint" in " ".join(sp.validate(c)) for c in log.configs
    )
    assert any("inferred" in n for n in log.notes)


def test_paper_json_failures_at_100_and_method_filter(tmp_path: Path) -> None:
    path = sim_logs.write_paper_json(tmp_path / "paper.json", n_per_seed=20)
    data = json.loads(path.read_text())
    log = read_log(path, space="autoresearch")
    flat = [r for m in data.values() for s in m.values() for r in s]
    assert len(log) == len(flat) == 120
    assert log.outcomes.count("ok") == sum(r["success"] for r in flat)
    assert all(v is None for v, o in zip(log.values, log.outcomes, strict=True) if o != "ok")
    assert set(log.outcomes) <= {"ok", "crash"}
    assert any("success only" in n for n in log.notes)
    assert len(read_log(path, space="autoresearch", method="tpe")) == 60
    with pytest.raises(LogError, match="no method 'cmaes'"):
        read_log(path, method="cmaes")


def test_centaur_study_and_its_export_read_alike(tmp_path: Path) -> None:
    space, fn, info = ar.make_task(0)
    url = f"sqlite:///{tmp_path / 's.db'}"
    studies = {}
    for seed in (0, 1):
        name = f"rs{seed}"
        studies[name] = optuna.create_study(
            storage=url, study_name=name, sampler=make_sampler("random", space, seed)
        )
        evaluator = FunctionEvaluator(space, fn, "ar", info)
        StudyRunner(studies[name], evaluator, budget=Budget(n_trials=4)).run()
    from_db = read_log(url, study="rs0")
    from_csv = read_log(export_csv(studies["rs0"], tmp_path / "t.csv"), space="autoresearch")
    assert len(from_db) == len(from_csv) == 4
    assert from_db.outcomes == from_csv.outcomes and from_db.values == from_csv.values
    assert from_db.configs == from_csv.configs
    assert from_db.space.failure_value == 100.0 and from_db.space.metric == "val_bpb"
    both = read_log(url, study="all")
    assert len(both) == 8 and both.configs[4:] == read_log(url, study="rs1").configs
    assert len(read_log(url, study="rs1,rs0")) == 8
    with pytest.raises(LogError, match="no study 'nope'"):
        read_log(url, study="nope")
    with pytest.raises(LogError, match="name the study with --study"):
        read_log(url)


def test_several_logs_merge_into_one(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    a = sim_logs.write_csv(tmp_path / "a.csv", rows[:20])
    b = sim_logs.write_csv(tmp_path / "b.csv", rows[20:])
    whole = read_log(sim_logs.write_csv(tmp_path / "all.csv", rows))
    merged = read_logs([a, b])  # spaces inferred separately, so re-inferred over both
    assert merged.configs == whole.configs and merged.outcomes == whole.outcomes
    assert merged.space.params == whole.space.params
    given = read_logs([a, b], space="autoresearch")
    assert given.space.names == list(ar.DEFAULTS) and len(given) == 40
    other = [{"LR": 0.1 * (i + 1), "value": 1.0 / (i + 1), "wall_time": 1.0} for i in range(10)]
    with pytest.raises(LogError, match="different parameters"):
        read_logs([a, sim_logs.write_csv(tmp_path / "o.csv", other)])


def _bad(rows: list[dict], change) -> list[dict]:  # type: ignore[no-untyped-def]
    out = [dict(r) for r in rows]
    change(out)
    return out


@pytest.mark.parametrize(
    "change, space, message",
    [
        (lambda rs: [r.pop("value") for r in rs], None, "no value column"),
        (lambda rs: [r.update(FOO=1) for r in rs], "autoresearch", r"\['FOO'\].*does not define"),
        (lambda rs: [r.update(outcome="oom") for r in rs], None, "no successful trial"),
        (lambda rs: rs[3].update(value="abc", outcome="ok"), None, "non-numeric"),
        (lambda rs: rs[2].update(DEPTH=99), "autoresearch", "DEPTH=99 lies outside"),
        (lambda rs: [r.pop("wall_time") for r in rs], None, "no wall-time column"),
        (lambda rs: [r.pop("DEPTH") for r in rs], "autoresearch", r"\['DEPTH'\] have no column"),
        (lambda rs: rs[5].update(DEPTH="deep"), None, "'DEPTH' mixes numbers and text"),
        (lambda rs: rs[5].update(DEPTH="deep"), "autoresearch", "DEPTH='deep' is not a number"),
    ],
)
def test_malformed_logs_are_rejected_saying_what_to_fix(
    tmp_path: Path,
    rows,
    change,
    space,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    path = sim_logs.write_csv(tmp_path / "bad.csv", _bad(rows, change))
    with pytest.raises(LogError, match=message):
        read_log(path, space=space)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(LogError, match="unknown log format"):
        read_log(tmp_path / "t.xlsx")
    with pytest.raises(LogError, match="no log file"):
        read_log(tmp_path / "missing.csv")


def test_fit_needs_enough_successes(tmp_path: Path, rows) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sklearn")
    from centaur_hpo.tasks.surrogate import fit

    few = _bad(rows, lambda rs: [r.update(outcome="crash", value=None) for r in rs[3:]])
    log = read_log(sim_logs.write_csv(tmp_path / "few.csv", few))
    with pytest.raises(LogError, match="only 3 successful"):
        fit(log)
