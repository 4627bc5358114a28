"""Trusted evaluator of the ``cpu-gpt`` task for the code-editing agent.

Run as ``python evaluate.py WORK_DIR`` after a (possibly LLM-edited) ``train.py`` has run in
``WORK_DIR``. It scores the ``model.pt`` that training left there and prints the summary block
(``---`` then ``val_bpb: ...``); that printed value, not the training script's, is the trial's.
A missing or unusable checkpoint is reported on stderr with exit status 1.

**What an edit to train.py may change, and what it may not.** Everything about *how the model
is trained* is the edit's to change: the 14 knobs' values, the optimizers, the learning-rate
schedule, batch sizes, gradient accumulation, initialisation, regularisation, weight averaging,
the order or amount of training data drawn from the train split, when to stop within the budget.
*What is measured* is fixed here, by code the edit cannot reach:

- the architecture is the ``GPT`` of this folder's ``model.py``, rebuilt from the checkpoint's
  four shape knobs (``DEPTH``, ``ASPECT_RATIO``, ``HEAD_DIM``, ``WINDOW_PATTERN``); the saved
  tensors must have exactly that model's names and shapes. An edit that adds, drops or reshapes
  parameters fails evaluation with a message naming them. An edit that changes the forward pass
  without changing the parameters (patching ``model.GPT`` at run time) is not rejected, but its
  weights are scored by the original forward pass, so it cannot buy a better number;
- the checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain values, never
  code or pickled objects;
- the metric is ``prepare.evaluate_bpb`` of this folder's ``prepare.py`` on its fixed validation
  windows, with a batch size and thread count chosen here.

Both modules are imported from this file's own folder (the package), never from ``WORK_DIR``: the
trial's copies of ``model.py`` and ``prepare.py`` are not read. Before scoring, the rebuilt model
must produce finite logits of the right shape and be causal (changing later bytes must not
change the logits of earlier positions); a failure of either means a bug in ``model.py`` or
poisoned weights, and is reported instead of a score.

Not checked: whether the training script trained on the validation bytes. The corpus is
CPython's own documentation, which every Python install holds, so it cannot be hidden from
training; the harness records the edited script of every trial for review.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if sys.path[:1] != [str(HERE)]:  # the trusted model.py and prepare.py, whatever PYTHONPATH says
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from model import CheckpointError, load_checkpoint  # noqa: E402
from prepare import MAX_SEQ_LEN, VOCAB_SIZE, evaluate_bpb, load_split  # noqa: E402

CHECKPOINT = "model.pt"
EVAL_BATCH_SIZE = 32


def check_trusted_imports() -> None:
    """Fail if ``model``/``prepare`` did not come from this folder (a shadowing module)."""
    for name in ("model", "prepare"):
        origin = Path(getattr(sys.modules[name], "__file__", "") or "").resolve()
        if origin.parent != HERE:
            raise RuntimeError(f"module {name} was imported from {origin}, not from {HERE}")


def sample_windows(n: int = 4) -> torch.Tensor:
    """``n`` fixed validation windows of ``MAX_SEQ_LEN`` bytes (int64, shape n x T)."""
    data = load_split("val").long()
    starts = torch.linspace(0, len(data) - MAX_SEQ_LEN - 1, n).long()
    return data[starts[:, None] + torch.arange(MAX_SEQ_LEN)]


@torch.no_grad()
def check_outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logits for ``x``, after checking their shape and that every one is finite."""
    logits = model(x)
    want = (*x.shape, VOCAB_SIZE)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != want:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise CheckpointError(f"the model's logits have shape {got}, expected {want}")
    if not bool(torch.isfinite(logits).all()):
        raise CheckpointError("the model produces NaN or infinite logits")
    return logits


@torch.no_grad()
def check_causal(model: torch.nn.Module, x: torch.Tensor, tol: float = 1e-4) -> None:
    """Raise unless the logits at positions < c are unchanged when every byte from ``c`` on is
    replaced by random bytes, for several cut points ``c``. A model that looks ahead would
    score far better than it could predict, so such a model gets no score at all."""
    base = check_outputs(model, x)
    T = x.size(1)
    gen = torch.Generator().manual_seed(1234)
    for cut in sorted({1, T // 4, T // 2, T - 1}):
        changed = x.clone()
        changed[:, cut:] = torch.randint(0, VOCAB_SIZE, (x.size(0), T - cut), generator=gen)
        out = check_outputs(model, changed)
        gap = float((out[:, :cut] - base[:, :cut]).abs().max())
        if gap > tol:
            raise CheckpointError(
                f"the model is not causal: changing the bytes from position {cut} on changes "
                f"the logits of earlier positions by up to {gap:.3g}"
            )


def evaluate(work_dir: Path) -> dict[str, float]:
    """Score ``work_dir/model.pt``; the summary metrics (raises CheckpointError when unusable)."""
    t0 = time.time()
    model, shape = load_checkpoint(work_dir / CHECKPOINT)
    check_causal(model, sample_windows())
    val_bpb = evaluate_bpb(model, batch_size=EVAL_BATCH_SIZE)
    if not math.isfinite(val_bpb) or val_bpb <= 0:
        raise CheckpointError(f"val_bpb came out as {val_bpb}")
    return {
        "val_bpb": val_bpb,
        "num_params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "depth": shape["DEPTH"],
        "eval_seconds": time.time() - t0,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python evaluate.py WORK_DIR", file=sys.stderr)
        return 2
    check_trusted_imports()
    torch.set_num_threads(int(os.environ.get("CENTAUR_THREADS") or 1))
    try:
        metrics = evaluate(Path(argv[0]))
    except CheckpointError as e:
        print(f"evaluation failed: {e}", file=sys.stderr, flush=True)
        return 1
    print("---")
    print(f"val_bpb:          {metrics['val_bpb']:.6f}")
    print(f"num_params_M:     {metrics['num_params_M']:.3f}")
    print(f"depth:            {metrics['depth']}")
    print(f"eval_seconds:     {metrics['eval_seconds']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
