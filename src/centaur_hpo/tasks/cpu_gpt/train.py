"""Train a small byte-level GPT on CPU for a fixed wall-clock budget, then report val_bpb.

The CPU counterpart of Karpathy's autoresearch ``train.py``: one file, read top to bottom, with
the same 14 tunable knobs and the same optimizer split (Muon for the weight matrices inside the
blocks, AdamW for embeddings, output head and scalars). The ALL_CAPS assignments below are what
a hyperparameter optimizer rewrites in a copy of this file; data, tokenizer and the metric live
in ``prepare.py`` next to it, the model's architecture in ``model.py``, and both are fixed.

Run as ``python train.py`` in a folder that also holds ``prepare.py`` and ``model.py``.
Environment: ``CENTAUR_TRIAL_BUDGET`` (training seconds; default ``prepare.TIME_BUDGET``),
``CENTAUR_SEED`` (default 0) and ``CENTAUR_THREADS`` (default 1).
On success it saves the trained weights and shape knobs to ``model.pt`` in the working folder
(what the trusted ``evaluate.py`` scores for the code-editing agent) and prints a ``---`` line
followed by ``key: value`` lines; if the loss goes NaN or explodes it prints ``FAIL`` and exits
with status 1.
"""

import math
import os
import resource
import sys
import time

import torch
from model import GPT, model_shape, save_checkpoint
from prepare import MAX_SEQ_LEN, TIME_BUDGET, VOCAB_SIZE, evaluate_bpb, make_dataloader

T_START = time.time()

# ---------------------------------------------------------------------------------------------
# Hyperparameters: plain literals, one per line, so an optimizer can rewrite them

# Model shape
DEPTH = 4  # number of transformer blocks
ASPECT_RATIO = 32  # model width = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 32  # width of one attention head
WINDOW_PATTERN = "SSSL"  # per layer, cycled: S = sliding window of half the context, L = full

# Batch: one optimizer step sees TOTAL_BATCH_SIZE tokens, in micro-batches of
# DEVICE_BATCH_SIZE sequences of MAX_SEQ_LEN bytes (gradient accumulation makes up the rest)
DEVICE_BATCH_SIZE = 16
TOTAL_BATCH_SIZE = 2**12

# Optimizers: Muon for the block matrices, AdamW for everything else
EMBEDDING_LR = 0.6  # token embedding table (AdamW)
UNEMBEDDING_LR = 0.004  # output head (AdamW)
MATRIX_LR = 0.04  # every weight matrix inside the blocks (Muon)
SCALAR_LR = 0.5  # per-layer residual mixing scalars (AdamW)
WEIGHT_DECAY = 0.2  # cautious weight decay on the Muon matrices, decayed to 0 over the run

# Learning-rate schedule over progress = training seconds / budget
WARMUP_RATIO = 0.0  # linear warm-up over this fraction of the budget
WARMDOWN_RATIO = 0.5  # linear decay over the last fraction of the budget ...
FINAL_LR_FRAC = 0.0  # ... down to this fraction of the peak rate

# ---------------------------------------------------------------------------------------------
# Setup

budget = float(os.environ.get("CENTAUR_TRIAL_BUDGET") or TIME_BUDGET)
seed = int(os.environ.get("CENTAUR_SEED") or 0)
# One thread unless CENTAUR_THREADS says otherwise. Measured on a shared 2-core machine, two
# OpenMP threads made a step of the default model up to 20x slower than one (each waits for the
# other at every kernel whenever a core is busy elsewhere), which would make the score depend on
# the neighbours' load. One thread also keeps the address space the memory cap limits the same
# on every machine (each thread adds a malloc arena), and lets parallel trials take a core each.
threads = int(os.environ.get("CENTAUR_THREADS") or 1)
torch.set_num_threads(threads)
torch.manual_seed(seed)

tokens_per_micro_batch = DEVICE_BATCH_SIZE * MAX_SEQ_LEN
if TOTAL_BATCH_SIZE % tokens_per_micro_batch != 0:
    raise SystemExit(
        f"TOTAL_BATCH_SIZE={TOTAL_BATCH_SIZE} must be a multiple of "
        f"DEVICE_BATCH_SIZE * MAX_SEQ_LEN = {tokens_per_micro_batch}"
    )
grad_accum_steps = TOTAL_BATCH_SIZE // tokens_per_micro_batch
if HEAD_DIM % 2:
    raise SystemExit(f"HEAD_DIM={HEAD_DIM} must be even (rotary embeddings rotate pairs)")

# Width rounded up to whole heads; S blocks attend over half the context, L over all of it, and
# (as in autoresearch) the last block always sees the whole context. See model.py.
model_dim, num_heads, windows = model_shape(DEPTH, ASPECT_RATIO, HEAD_DIM, WINDOW_PATTERN)
adam_betas = (0.8, 0.95)  # autoresearch's AdamW betas; not in the tuned space
# A run whose smoothed training loss climbs above that of uniform guessing (ln 256 nats per
# byte) by half a nat has blown up: it has become confidently wrong, which a model that merely
# learns slowly never does. With logits capped at +-15 the loss cannot reach autoresearch's
# "> 100" test, so the explosion threshold is stated relative to the vocabulary instead.
exploded_loss = math.log(VOCAB_SIZE) + 0.5

# ---------------------------------------------------------------------------------------------
# Model: the pre-norm GPT of model.py (rotary positions, QK-norm, ReLU^2 MLP, per-layer residual
# scalars, logits soft-capped at +-15). Its architecture is fixed: the trusted evaluator rebuilds
# it from its own copy of model.py and loads only the weights this script saves at the end.

# ---------------------------------------------------------------------------------------------
# Muon: momentum SGD whose update for each weight matrix is replaced by the nearest
# semi-orthogonal matrix (Newton-Schulz iteration), so every direction moves at the same rate.


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately U V^T of g = U S V^T, by a quintic Newton-Schulz iteration.

    The coefficients (3.4445, -4.7750, 2.0315) are the published ones that push all singular
    values towards 1 quickly without needing them to converge exactly.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, orthogonalised updates scaled by sqrt(max(1, rows/cols)), and
    cautious decoupled weight decay (decay only where the update already shrinks the weight)."""

    def __init__(self, params, lr: float, momentum: float = 0.95, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"]
                buf.lerp_(p.grad, 1 - mu)
                update = orthogonalize(p.grad.lerp(buf, mu))
                update *= max(1.0, p.size(0) / p.size(1)) ** 0.5
                if wd:
                    p.sub_(p * (update * p > 0), alpha=lr * wd)
                p.sub_(update, alpha=lr)


model = GPT(DEPTH, model_dim, num_heads, windows)
num_params = sum(p.numel() for p in model.parameters())

matrix_params = [p for p in model.blocks.parameters() if p.ndim == 2]
adam = torch.optim.AdamW(
    [
        dict(params=[model.wte.weight], lr=EMBEDDING_LR),
        dict(params=[model.lm_head.weight], lr=UNEMBEDDING_LR),
        dict(params=[model.resid_lambdas, model.x0_lambdas], lr=SCALAR_LR),
    ],
    betas=adam_betas,
    eps=1e-10,
    weight_decay=0.0,
    foreach=True,
)
muon = Muon(matrix_params, lr=MATRIX_LR, weight_decay=WEIGHT_DECAY)
optimizers = [adam, muon]
for opt in optimizers:
    for group in opt.param_groups:
        group["peak_lr"] = group["lr"]


def lr_multiplier(progress: float) -> float:
    """Warm-up, constant, then linear warm-down to FINAL_LR_FRAC, over progress in [0, 1]."""
    if progress < WARMUP_RATIO:
        return (progress + 1e-3) / (WARMUP_RATIO + 1e-3)
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    remaining = (1.0 - progress) / max(WARMDOWN_RATIO, 1e-9)
    return remaining + (1.0 - remaining) * FINAL_LR_FRAC


def muon_momentum(step: int) -> float:
    """autoresearch ramps Muon's momentum from 0.85 to 0.95; here over the first 50 steps."""
    return 0.85 + 0.10 * min(step / 50, 1.0)


def fail(reason: str) -> None:
    print(reason, file=sys.stderr, flush=True)
    print("FAIL", flush=True)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Training loop: runs until the training time uses the budget. The clock is checked after every
# micro-batch, so even a model whose single step takes longer than the whole budget stops within
# one micro-batch of it (an unfinished step's gradients are dropped, never half-applied). On a
# CPU there is no compilation to warm up, so unlike autoresearch no step is left off the clock.

train_loader = make_dataloader("train", DEVICE_BATCH_SIZE, seed=seed)
x, y = next(train_loader)
print(
    f"params {num_params / 1e6:.2f}M | width {model_dim} | heads {num_heads} | "
    f"grad accum {grad_accum_steps} | threads {threads} | budget {budget:g}s",
    flush=True,
)

step = 0
training_time = 0.0
smooth_loss = 0.0
last_log = 0.0
out_of_time = False
t_train = time.time()
while not out_of_time:
    t0 = time.time()
    progress = min(training_time / budget, 1.0)
    lrm = lr_multiplier(progress)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * lrm
    for group in muon.param_groups:
        group["momentum"] = muon_momentum(step)
        group["weight_decay"] = WEIGHT_DECAY * (1.0 - progress)
    for _micro in range(grad_accum_steps):
        loss = model(x, y)
        (loss / grad_accum_steps).backward()
        x, y = next(train_loader)
        training_time = time.time() - t_train
        if training_time >= budget:
            out_of_time = True
            break
    if out_of_time and _micro < grad_accum_steps - 1:
        break  # the step is incomplete: drop its gradients
    for opt in optimizers:
        opt.step()
    model.zero_grad(set_to_none=True)

    train_loss = loss.item()
    step += 1
    smooth_loss = 0.9 * smooth_loss + 0.1 * train_loss
    debiased = smooth_loss / (1 - 0.9**step)
    if not math.isfinite(train_loss):
        fail(f"step {step}: training loss is {train_loss}")
    if step >= 10 and debiased > exploded_loss:
        fail(f"step {step}: smoothed training loss {debiased:.3f} > {exploded_loss:.3f}")
    training_time = time.time() - t_train
    if training_time - last_log >= 5.0 or out_of_time:
        last_log = training_time
        print(
            f"step {step:05d} ({100 * progress:5.1f}%) | loss {debiased:.4f} | lrm {lrm:.2f}"
            f" | {(time.time() - t0) * 1000:.0f} ms/step",
            flush=True,
        )
    out_of_time = out_of_time or training_time >= budget

# ---------------------------------------------------------------------------------------------
# Evaluation and summary

t_eval = time.time()
val_bpb = evaluate_bpb(model, batch_size=max(DEVICE_BATCH_SIZE, 16))
if not math.isfinite(val_bpb):
    fail(f"val_bpb is {val_bpb}")
# The same explosion test on the held-out bytes, in bits: it catches a run that blew up in its
# last steps, or in fewer steps than the smoothed training loss needs to be trusted.
if val_bpb > exploded_loss / math.log(2):
    fail(f"val_bpb {val_bpb:.3f} > {exploded_loss / math.log(2):.3f}: worse than uniform guessing")
# The weights and shape knobs, for evaluate.py (which never trusts the val_bpb printed below).
# Only when asked (the code-editing agent's harness sets it): a long study would otherwise keep
# a checkpoint of up to ~56 MB in every trial folder.
if os.environ.get("CENTAUR_SAVE_CHECKPOINT"):
    save_checkpoint(
        "model.pt",
        model,
        dict(
            DEPTH=DEPTH, ASPECT_RATIO=ASPECT_RATIO, HEAD_DIM=HEAD_DIM, WINDOW_PATTERN=WINDOW_PATTERN
        ),
    )


def peak_address_space_mb() -> float:
    """VmPeak, the quantity the runner's RLIMIT_AS memory cap limits (0 where /proc is absent)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


peak_memory_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {training_time:.1f}")
print(f"eval_seconds:     {time.time() - t_eval:.1f}")
print(f"total_seconds:    {time.time() - T_START:.1f}")
print(f"peak_memory_mb:   {peak_memory_mb:.1f}")
print(f"peak_vm_mb:       {peak_address_space_mb():.1f}")
print(f"mfu_percent:      {0.0:.2f}")  # a CPU has no well-defined peak to divide by
print(f"total_tokens_M:   {step * TOTAL_BATCH_SIZE / 1e6:.3f}")
print(f"num_steps:        {step}")
print(f"num_params_M:     {num_params / 1e6:.3f}")
print(f"depth:            {DEPTH}")
