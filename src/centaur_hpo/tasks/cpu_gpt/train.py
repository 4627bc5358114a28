"""Train a small byte-level GPT on CPU for a fixed wall-clock budget, then report val_bpb.

The CPU counterpart of Karpathy's autoresearch ``train.py``: one file, read top to bottom, with
the same 14 tunable knobs and the same optimizer split (Muon for the weight matrices inside the
blocks, AdamW for embeddings, output head and scalars). The ALL_CAPS assignments below are what
a hyperparameter optimizer rewrites in a copy of this file; data, tokenizer and the metric live
in ``prepare.py`` next to it and are fixed.

Run as ``python train.py`` in a folder that also holds ``prepare.py``. Environment:
``CENTAUR_TRIAL_BUDGET`` (training seconds; default ``prepare.TIME_BUDGET``), ``CENTAUR_SEED``
(default 0) and ``CENTAUR_THREADS`` (default 1).
On success it prints a ``---`` line followed by ``key: value`` lines; if the loss goes NaN or
explodes it prints ``FAIL`` and exits with status 1.
"""

import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
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

model_dim = -(-DEPTH * ASPECT_RATIO // HEAD_DIM) * HEAD_DIM  # round up to whole heads
num_heads = model_dim // HEAD_DIM
windows = [
    MAX_SEQ_LEN // 2 if WINDOW_PATTERN[i % len(WINDOW_PATTERN)] == "S" else MAX_SEQ_LEN
    for i in range(DEPTH)
]
windows[-1] = MAX_SEQ_LEN  # as in autoresearch, the last block always sees the whole context
logit_cap = 15.0  # logits are squashed into (-15, 15), as in autoresearch; not a knob
adam_betas = (0.8, 0.95)  # autoresearch's AdamW betas; not in the tuned space
# A run whose smoothed training loss climbs above that of uniform guessing (ln 256 nats per
# byte) by half a nat has blown up: it has become confidently wrong, which a model that merely
# learns slowly never does. With logits capped at +-15 the loss cannot reach autoresearch's
# "> 100" test, so the explosion threshold is stated relative to the vocabulary instead.
exploded_loss = math.log(VOCAB_SIZE) + 0.5

# ---------------------------------------------------------------------------------------------
# Model: pre-norm GPT with rotary positions, QK-norm, ReLU^2 MLP and per-layer residual scalars


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMSNorm: keeps activations at unit scale without extra weights."""
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (T, head_dim/2) for rotary position embeddings."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels by a position-dependent angle (x is B, H, T, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def window_mask(seq_len: int, window: int) -> torch.Tensor | None:
    """Boolean (T, T) mask: causal, and each query sees at most ``window`` keys.
    None means plain causal attention, which has a faster kernel."""
    if window >= seq_len:
        return None
    i = torch.arange(seq_len)[:, None]
    j = torch.arange(seq_len)[None, :]
    return (j <= i) & (i - j < window)


class Attention(nn.Module):
    def __init__(self, dim: int, n_head: int, window: int) -> None:
        super().__init__()
        self.n_head = n_head
        # Separate projections (not one fused qkv matrix) so Muon orthogonalises each on its own.
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)
        self.register_buffer("mask", window_mask(MAX_SEQ_LEN, window), persistent=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

        q = apply_rotary(rms_norm(heads(self.q(x))), cos, sin)
        k = apply_rotary(rms_norm(heads(self.k(x))), cos, sin)
        v = heads(self.v(x))
        if self.mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask[:T, :T])
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim, bias=False)
        self.proj = nn.Linear(4 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim: int, n_head: int, window: int) -> None:
        super().__init__()
        self.attn = Attention(dim, n_head, window)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rms_norm(x), cos, sin)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, depth: int, dim: int, n_head: int, windows: list[int]) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB_SIZE, dim)
        self.blocks = nn.ModuleList(Block(dim, n_head, w) for w in windows)
        self.lm_head = nn.Linear(dim, VOCAB_SIZE, bias=False)
        # Each block's input is resid_lambdas[i] * x + x0_lambdas[i] * (embedded input)
        self.resid_lambdas = nn.Parameter(torch.ones(depth))
        self.x0_lambdas = nn.Parameter(torch.zeros(depth))
        cos, sin = rotary_tables(MAX_SEQ_LEN, dim // n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights(dim)

    @torch.no_grad()
    def init_weights(self, dim: int) -> None:
        """Input projections uniform with std 1/sqrt(dim); output projections start at zero so
        every block begins as the identity; a near-zero head starts near uniform predictions."""
        bound = 3**0.5 * dim**-0.5
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.normal_(self.lm_head.weight, std=0.001)
        for block in self.blocks:
            for lin in (block.attn.q, block.attn.k, block.attn.v, block.mlp.fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.proj.weight)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean"
    ) -> torch.Tensor:
        T = idx.size(1)
        cos, sin = self.cos[:T], self.sin[:T]
        x = x0 = rms_norm(self.wte(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            x = block(x, cos, sin)
        logits = self.lm_head(rms_norm(x))
        logits = logit_cap * torch.tanh(logits / logit_cap)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.view(-1, VOCAB_SIZE), targets.reshape(-1), reduction=reduction
        )
        return loss.view(targets.shape) if reduction == "none" else loss


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
