"""The statistics of a benchmark: paired tests, multiple-testing correction, ranks, CD.

Why these: seeds pair the cells (the same seed gives every method the same task noise), so a
paired, distribution-free test (Wilcoxon signed-rank) compares two methods on one task; many
pairs are compared at once, so the p-values are Holm-corrected. Across tasks, methods are
compared by average rank with the Friedman test and the Nemenyi critical difference (Demsar,
JMLR 2006). With few seeds an exact Wilcoxon test *cannot* reach significance (five pairs give
a smallest two-sided p of 1/16); :func:`min_wilcoxon_p` says so before anyone reads a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def min_wilcoxon_p(n: int, alternative: str = "two-sided") -> float:
    """The smallest p-value an exact Wilcoxon signed-rank test on ``n`` pairs can give.

    All differences of one sign: one arrangement out of 2**n (two of them for two-sided).
    """
    if n <= 0:
        return 1.0
    one = 0.5**n
    return min(1.0, 2 * one) if alternative == "two-sided" else one


@dataclass
class PairTest:
    a: str
    b: str
    n: int
    statistic: float | None
    p: float
    p_holm: float = math.nan
    median_diff: float = math.nan  # median of a - b (in the task's direction: < 0 favours a)
    wins_a: int = 0
    wins_b: int = 0


def wilcoxon_pair(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float]:
    """Two-sided Wilcoxon signed-rank test of paired samples; p = 1 when all pairs are equal.

    scipy picks the exact distribution for small samples without ties or zeros, which is what a
    handful of seeds needs; zero differences are dropped (Wilcoxon's own convention).
    """
    d = np.asarray(x, float) - np.asarray(y, float)
    if len(d) == 0 or np.all(d == 0):
        return None, 1.0
    res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, float)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p[idx])
        adjusted[idx] = min(1.0, running)
    return adjusted.tolist()


def pairwise_wilcoxon(
    values: Mapping[str, Mapping[int, float]], direction: str = "minimize"
) -> list[PairTest]:
    """Every pair of methods on one task, paired by seed, Holm-corrected over the pairs.

    ``values[method][seed]`` is the final best value of that cell. Only seeds both methods ran
    are paired.
    """
    methods = list(values)
    tests: list[PairTest] = []
    sign = 1.0 if direction == "minimize" else -1.0
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            seeds = sorted(set(values[a]) & set(values[b]))
            x = [values[a][s] for s in seeds]
            y = [values[b][s] for s in seeds]
            stat, p = wilcoxon_pair(x, y) if seeds else (None, 1.0)
            d = [sign * (u - v) for u, v in zip(x, y, strict=True)]
            tests.append(
                PairTest(
                    a,
                    b,
                    len(seeds),
                    stat,
                    p,
                    median_diff=float(np.median([u - v for u, v in zip(x, y, strict=True)]))
                    if seeds
                    else math.nan,
                    wins_a=sum(1 for v in d if v < 0),
                    wins_b=sum(1 for v in d if v > 0),
                )
            )
    for t, adj in zip(tests, holm([t.p for t in tests]), strict=True):
        t.p_holm = adj
    return tests


def ranks(matrix: np.ndarray, direction: str = "minimize") -> np.ndarray:
    """Rank methods (columns) within each block (row): 1 = best, ties share the mean rank."""
    m = np.asarray(matrix, float)
    signed = m if direction == "minimize" else -m
    return np.vstack([stats.rankdata(row) for row in signed])


def friedman(matrix: np.ndarray) -> tuple[float, float] | None:
    """Friedman chi-square test over blocks (rows); None when it is undefined (k < 3 or N < 2)."""
    m = np.asarray(matrix, float)
    if m.ndim != 2 or m.shape[1] < 3 or m.shape[0] < 2:
        return None
    res = stats.friedmanchisquare(*[m[:, j] for j in range(m.shape[1])])
    return float(res.statistic), float(res.pvalue)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks for ``k`` methods over ``n`` blocks.

    CD = q_alpha * sqrt(k (k + 1) / (6 n)), with q_alpha the studentized range quantile for k
    groups and infinite degrees of freedom divided by sqrt(2) (Demsar's table: 2.569 for k = 4).
    """
    if k < 2 or n < 1:
        return math.nan
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def cd_cliques(avg_ranks: Mapping[str, float], cd: float) -> list[list[str]]:
    """Maximal groups of methods whose average ranks lie within ``cd`` of each other.

    These are the bars of a critical-difference diagram: methods joined by a bar are not
    significantly different. Groups contained in a larger one are dropped.
    """
    items = sorted(avg_ranks.items(), key=lambda kv: kv[1])
    groups: list[list[str]] = []
    for i in range(len(items)):
        j = i
        while j + 1 < len(items) and items[j + 1][1] - items[i][1] <= cd:
            j += 1
        if j > i:
            group = [name for name, _ in items[i : j + 1]]
            if not any(set(group) <= set(g) for g in groups):
                groups.append(group)
    return groups
