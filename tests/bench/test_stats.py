"""The statistics checked against scipy and against published values (Demsar 2006)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from centaur_hpo.bench import stats


def test_min_wilcoxon_p_matches_the_exact_test() -> None:
    for n in range(1, 9):
        x = np.arange(1, n + 1, dtype=float)  # every difference positive, all distinct
        p = sps.wilcoxon(x, np.zeros(n), method="exact").pvalue
        assert stats.min_wilcoxon_p(n) == pytest.approx(p)
    assert stats.min_wilcoxon_p(5) == pytest.approx(0.0625)  # five seeds cannot reach 0.05
    assert stats.min_wilcoxon_p(6) == pytest.approx(0.03125)


def test_wilcoxon_pair_agrees_with_scipy_and_handles_equal_samples() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=9), rng.normal(size=9) + 0.5
    stat, p = stats.wilcoxon_pair(x, y)
    ref = sps.wilcoxon(x, y)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert stats.wilcoxon_pair([1.0, 2.0], [1.0, 2.0]) == (None, 1.0)


def test_holm_known_values() -> None:
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06
    assert stats.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_pairwise_wilcoxon_pairs_by_seed_and_corrects() -> None:
    values = {
        "a": {s: 1.0 + 0.01 * s for s in range(8)},
        "b": {s: 2.0 + 0.02 * s for s in range(8)},
        "c": {s: 1.0 + 0.01 * s + (0.001 if s % 2 else -0.001) for s in range(8)},
    }
    tests = {(t.a, t.b): t for t in stats.pairwise_wilcoxon(values)}
    ab = tests[("a", "b")]
    assert ab.n == 8 and ab.wins_a == 8 and ab.wins_b == 0
    assert ab.p == pytest.approx(
        sps.wilcoxon(list(values["a"].values()), list(values["b"].values())).pvalue
    )
    raw = [t.p for t in tests.values()]
    assert [t.p_holm for t in tests.values()] == pytest.approx(stats.holm(raw))
    assert tests[("a", "c")].p > 0.5  # a and c differ only by symmetric noise


def test_ranks_and_friedman_against_scipy() -> None:
    m = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [1.0, 1.0, 2.0], [3.0, 2.0, 1.0]])
    r = stats.ranks(m)
    assert r[2].tolist() == [1.5, 1.5, 3.0]
    assert stats.ranks(m, "maximize")[0].tolist() == [3.0, 2.0, 1.0]
    chi, p = stats.friedman(m)
    ref = sps.friedmanchisquare(m[:, 0], m[:, 1], m[:, 2])
    assert chi == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert stats.friedman(m[:, :2]) is None


def test_nemenyi_cd_matches_demsar() -> None:
    # Demsar (2006), Table 5(a): q_0.05 for k = 2..8 (three decimals).
    table = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031}
    for k, q in table.items():
        assert stats.nemenyi_cd(k, 1) / math.sqrt(k * (k + 1) / 6) == pytest.approx(q, abs=1e-3)
    # his worked example: k = 4 algorithms on N = 14 data sets, CD = 1.25
    assert stats.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=0.01)
    assert math.isnan(stats.nemenyi_cd(1, 5))


def test_cd_cliques() -> None:
    ranks = {"a": 1.0, "b": 1.4, "c": 2.6, "d": 3.0}
    assert stats.cd_cliques(ranks, 0.5) == [["a", "b"], ["c", "d"]]
    assert stats.cd_cliques(ranks, 1.7) == [["a", "b", "c"], ["b", "c", "d"]]
    assert stats.cd_cliques(ranks, 0.1) == []
