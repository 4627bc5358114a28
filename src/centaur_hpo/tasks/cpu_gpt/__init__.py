"""The ``cpu-gpt`` task: a small byte-level GPT trained on CPU for a fixed time budget.

``train.py`` holds the tunable knobs (an optimizer rewrites a copy of it per trial);
``prepare.py`` holds what must stay fixed between trials: data, tokenizer and evaluation;
``space.toml`` is the paper's 14-hyperparameter space scaled to a CPU. Both scripts are run as
plain scripts in a trial folder, not imported from this package.

``trials.csv`` is a trial log of this task recorded by this project (for surrogate models and
noise estimates): random search and CMA-ES, seed 0, 45 trials each at a 13 s training budget,
one thread per trial on a shared 2-core machine, the default configuration run four times.
Each row is :func:`centaur_hpo.records.export_csv` output plus a ``study`` column; error texts
are cut to their last line.
"""
