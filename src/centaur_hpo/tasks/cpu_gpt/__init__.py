"""The ``cpu-gpt`` task: a small byte-level GPT trained on CPU for a fixed time budget.

``train.py`` holds the tunable knobs (an optimizer rewrites a copy of it per trial);
``prepare.py`` holds what must stay fixed between trials: data, tokenizer and evaluation;
``model.py`` the fixed architecture and the checkpoint (``model.pt``) that ``train.py`` saves;
``space.toml`` is the paper's 14-hyperparameter space scaled to a CPU. These are run as plain
scripts and modules in a trial folder, not imported from this package.

``evaluate.py`` is the task's trusted evaluator for the code-editing agent
(``centaur tune --task cpu-gpt --method code_agent`` uses it by default): run in its own process
as ``python evaluate.py WORK_DIR``, it rebuilds the model from this folder's ``model.py``, loads
the saved weights and prints the val_bpb that becomes the trial's value. Its docstring states
what an edit of ``train.py`` may and may not change.

``trials.csv`` is a trial log of this task recorded by this project (for surrogate models and
noise estimates): random search and CMA-ES, seed 0, 45 trials each at a 13 s training budget,
one thread per trial on a shared 2-core machine, the default configuration run four times.
Each row is :func:`centaur_hpo.records.export_csv` output plus a ``study`` column; error texts
are cut to their last line.
"""
