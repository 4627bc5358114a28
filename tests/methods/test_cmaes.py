"""CMA-ES (cmaes.CatCMAwM) behind the common interface: a generation told with mostly failures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tests.test_study import SPACE

from centaur_hpo.methods.cmaes import CmaEsSampler, tell_generation


@pytest.mark.parametrize("failed_value", [100.0, 1e300])
def test_a_generation_of_failures_is_still_ranked_by_fitness(failed_value: float) -> None:
    """CatCMAwM's box penalty is scaled by past inter-quartile ranges; with none yet (three
    quarters of the first generation failed at one value) it became NaN and ranked the whole
    generation arbitrarily (numpy warned 'Mean of empty slice')."""
    opt = CmaEsSampler(SPACE, 0).optimizer
    n = opt.population_size
    sols = [opt.ask() for _ in range(n)]
    best = sols[-1]  # last, so an arbitrary (index-order) ranking would leave it out
    batch = [(s, failed_value) for s in sols[:-1]] + [(best, 0.5)]
    mean_before = np.array(opt._mean)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tell_generation(opt, batch)
    mean_after = np.array(opt._mean)
    assert np.all(np.isfinite(mean_after)) and np.isfinite(opt._sigma)
    # The one success carries the largest recombination weight, so the mean moves toward it.
    target = np.array(best.x if best.x is not None else best.z)
    if best.x is not None and best.z is not None:
        target = np.concatenate([best.x, best.z])
    assert np.linalg.norm(mean_after - target) < np.linalg.norm(mean_before - target)


def test_an_ordinary_generation_is_told_unchanged() -> None:
    a = CmaEsSampler(SPACE, 0).optimizer
    b = CmaEsSampler(SPACE, 0).optimizer
    a.tell([(a.ask(), float(i)) for i in range(a.population_size)])
    tell_generation(b, [(b.ask(), float(i)) for i in range(b.population_size)])
    assert np.allclose(a._mean, b._mean) and a._iqhist_values == b._iqhist_values
