"""Built-in tasks by name: training scripts shipped with the package (``--task cpu-gpt``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent

#: name -> (training script, space file), both inside the package.
SCRIPT_TASKS = {
    "cpu-gpt": ("cpu_gpt/train.py", "cpu_gpt/space.toml"),
}

#: name -> the task's trusted evaluator (``python EVALUATOR WORK_DIR``) for the code-editing
#: agent, which never trusts what an edited training script prints about itself.
TASK_EVALUATORS = {
    "cpu-gpt": "cpu_gpt/evaluate.py",
}

#: name -> what an edit must keep doing, told to the code-editing agent's LLM.
TASK_CONTRACTS = {
    "cpu-gpt": (
        "The model's architecture is fixed by model.py, which the evaluator rebuilds from its own "
        "copy: keep building the model with model_shape/GPT from DEPTH, ASPECT_RATIO, HEAD_DIM "
        "and WINDOW_PATTERN, and keep the save_checkpoint('model.pt', ...) call at the end; saved "
        "weights whose names or shapes differ from that architecture fail evaluation. Anything "
        "about how the model is trained (knob values, optimizers, schedule, batching, training "
        "loop) may change."
    ),
}


def script_task(name: str) -> tuple[Path, Path]:
    """The script and space file of a built-in task; unknown names list the known ones."""
    if name not in SCRIPT_TASKS:
        raise ValueError(
            f"unknown task {name!r}; built-in tasks: {', '.join(sorted(SCRIPT_TASKS))}"
        )
    script, space = SCRIPT_TASKS[name]
    return _HERE / script, _HERE / space


def code_agent_defaults(name: str) -> dict[str, Any]:
    """The code agent's options a built-in task supplies (``evaluator``, ``contract``); the
    user's own ``--option`` values take precedence. Empty for a task without an evaluator."""
    script_task(name)  # unknown names fail here, with the list of known ones
    out: dict[str, Any] = {}
    if name in TASK_EVALUATORS:
        out["evaluator"] = str(_HERE / TASK_EVALUATORS[name])
    if name in TASK_CONTRACTS:
        out["contract"] = TASK_CONTRACTS[name]
    return out
