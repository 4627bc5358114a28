"""centaur-hpo: tune a training script's hyperparameters under a fixed compute budget.

Classical optimizers (random, TPE, CMA-ES, GP-BO, SMAC), LLM optimizers and the hybrid Centaur,
behind one engine whose studies live in an Optuna storage.
"""

from centaur_hpo.api import TuneResult, tune
from centaur_hpo.methods import make_sampler
from centaur_hpo.space import Param, SearchSpace, SpaceError

__all__ = ["Param", "SearchSpace", "SpaceError", "TuneResult", "make_sampler", "tune"]
__version__ = "0.1.0"
