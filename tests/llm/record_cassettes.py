"""Record the cassettes the fast method tests replay: ``python -m tests.llm.record_cassettes``.

Each LLM method runs a few trials of the autoresearch stand-in with the embedded SmolLM2 model;
its LLM calls are exported as ``cassettes/METHOD.jsonl`` and its trials as
``cassettes/METHOD.trials.json``. Re-record after changing a prompt: the replay checks every
prompt against the recording and fails on a difference.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tests.llm.helpers import CASSETTES, METHOD_OPTIONS, open_result, trial_table, tune_method

from centaur_hpo.llm import export_cassette


def record(method: str, folder: Path, out: Path = CASSETTES) -> Path:
    result = tune_method(method, folder, "local")
    study = open_result(result)
    out.mkdir(parents=True, exist_ok=True)
    path = export_cassette(study, out / f"{method}.jsonl")
    (out / f"{method}.trials.json").write_text(json.dumps(trial_table(study), indent=1) + "\n")
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or list(METHOD_OPTIONS):
        with tempfile.TemporaryDirectory() as tmp:
            print("recorded", record(name, Path(tmp)))
