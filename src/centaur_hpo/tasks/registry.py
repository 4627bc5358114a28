"""Built-in tasks by name: training scripts shipped with the package (``--task cpu-gpt``)."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent

#: name -> (training script, space file), both inside the package.
SCRIPT_TASKS = {
    "cpu-gpt": ("cpu_gpt/train.py", "cpu_gpt/space.toml"),
}


def script_task(name: str) -> tuple[Path, Path]:
    """The script and space file of a built-in task; unknown names list the known ones."""
    if name not in SCRIPT_TASKS:
        raise ValueError(
            f"unknown task {name!r}; built-in tasks: {', '.join(sorted(SCRIPT_TASKS))}"
        )
    script, space = SCRIPT_TASKS[name]
    return _HERE / script, _HERE / space
