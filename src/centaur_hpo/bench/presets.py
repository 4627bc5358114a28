"""Ready-made grids (``centaur bench --preset NAME``); flags given with a preset override it.

``paper`` is the paper's protocol on the autoresearch-like simulated task: a 24 h training-time
budget per cell (about 290 five-minute trials), trial 0 = the default configuration, failed
trials told as val_bpb 100, eight seeds. Two kinds of method cannot do that on a laptop, and run
fewer seeds and trials (the report lists every such limit):

* ``smac``: about 0.5-1 s of optimizer time a trial (a minute or more per 24 h cell on a busy
  laptop core): four seeds.
* ``gp``: Optuna's GPSampler refits and optimises its acquisition every trial, a few seconds a
  trial at a few hundred trials on one core, so a full cell takes a quarter of an hour or more.
* the LLM methods run the embedded SmolLM2-135M on CPU, seconds per call (tens of seconds when
  the cores are busy).

``code_agent`` edits a training script's source, which a simulated task does not have, so it is
not in the grid. ``paper-classical`` is the grid without LLM methods and without limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from centaur_hpo.methods import CLASSICAL

# The simulated task by its module factory: the same landscape whether or not the simulated-task
# registry is installed, and the name stays ``autoresearch-sim`` in the cells.
PAPER_TASK = "autoresearch-sim=fn:centaur_hpo.tasks.autoresearch_sim:make_task"
PAPER_LLM_METHODS = ("llm_agent", "llambo", "llm_warm_start", "centaur")
PAPER_LIMITS = {
    "smac": {"seeds": "0-3"},
    "gp": {"seeds": "0-1", "n_trials": 30},
    "llm_agent": {"seeds": "0-1", "n_trials": 6},
    "llm_warm_start": {"seeds": "0-1", "n_trials": 6},
    "centaur": {"seeds": "0-1", "n_trials": 20},
    "llambo": {"seeds": "0-1", "n_trials": 4},
}


def paper() -> dict[str, Any]:
    return {
        "methods": list(CLASSICAL) + list(PAPER_LLM_METHODS),
        "seeds": "0-7",
        "tasks": [PAPER_TASK],
        "budget": "24h",
        "clock": "training",
        "failure_value": 100.0,
        "failure_policy": "penalty",
        "default_first": True,
        "limits": {m: dict(v) for m, v in PAPER_LIMITS.items()},
        "out": "bench-paper",
    }


def paper_classical() -> dict[str, Any]:
    """The paper grid without the LLM methods (minutes on two cores)."""
    data = paper()
    data["methods"] = list(CLASSICAL)
    data["limits"] = {}
    data["out"] = "bench-paper-classical"
    return data


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "paper": paper,
    "paper-classical": paper_classical,
}
