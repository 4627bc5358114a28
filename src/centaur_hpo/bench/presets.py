"""Ready-made grids (``centaur bench --preset NAME``); flags given with a preset override it.

``paper`` is the paper's protocol on the autoresearch-like simulated task: a 24 h training-time
budget per cell (about 290 five-minute trials), trial 0 = the default configuration, failed
trials told as val_bpb 100, eight seeds. Every classical method (GP-BO and SMAC included, about a
minute per cell each since their speed-ups) runs that in full. The LLM methods call the embedded
SmolLM2-135M on CPU, about 10 s per call on a quiet core and several times that on a busy one, so
the ones that call it on many trials run fewer seeds and trials (the report lists every limit):

* ``llm_warm_start`` calls the LLM once per cell and needs no limit;
* ``centaur`` (an LLM call on 30 % of trials after 10 warm-up trials): 2 seeds x 40 trials;
* ``llm_agent`` (a call every trial): 2 seeds x 12 trials;
* ``llambo`` (several calls every trial after a 5-trial random start): 1 seed x 8 trials.

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
    "llm_agent": {"seeds": "0-1", "n_trials": 12},
    "centaur": {"seeds": "0-1", "n_trials": 40},
    "llambo": {"seeds": "0", "n_trials": 8},
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
