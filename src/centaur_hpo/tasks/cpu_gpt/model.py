"""The fixed architecture of the ``cpu-gpt`` task and its checkpoint format.

``train.py`` builds its model from here, and the trusted ``evaluate.py`` rebuilds the same
model from *its own* copy of this file before loading the weights a trial saved. Keeping the
architecture out of ``train.py`` is what lets the code-editing agent rewrite the training script
freely (optimizer, schedule, loop) while the thing being measured stays the same: a checkpoint
holds tensors and four shape knobs, never code, so an edit cannot change how the evaluator's
model computes its predictions.

The model: a pre-norm GPT with rotary positions, QK-norm, a ReLU^2 MLP, per-layer residual
scalars and soft-capped logits, shaped by ``DEPTH``, ``ASPECT_RATIO``, ``HEAD_DIM`` and
``WINDOW_PATTERN`` (see :func:`model_shape`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import MAX_SEQ_LEN, VOCAB_SIZE

LOGIT_CAP = 15.0  # logits are squashed into (-15, 15), as in autoresearch; not a knob
#: The train.py knobs that decide the architecture; a checkpoint records exactly these.
SHAPE_KNOBS = ("DEPTH", "ASPECT_RATIO", "HEAD_DIM", "WINDOW_PATTERN")
CHECKPOINT_FORMAT = "cpu-gpt-checkpoint/1"


def model_shape(
    depth: int, aspect_ratio: int, head_dim: int, window_pattern: str
) -> tuple[int, int, list[int]]:
    """(model width, number of heads, attention window per block) from the shape knobs.

    The width is ``depth * aspect_ratio`` rounded up to whole heads; ``S`` in the pattern (cycled
    over the blocks) is a sliding window of half the context, ``L`` the full context, and, as in
    autoresearch, the last block always sees the whole context.
    """
    if depth < 1 or aspect_ratio < 1 or head_dim < 2 or head_dim % 2:
        raise ValueError(
            f"DEPTH={depth}, ASPECT_RATIO={aspect_ratio} must be >= 1 and HEAD_DIM={head_dim} "
            "even and >= 2 (rotary embeddings rotate pairs)"
        )
    if not window_pattern or set(window_pattern) - {"S", "L"}:
        raise ValueError(f"WINDOW_PATTERN={window_pattern!r} must be a string of S and L")
    model_dim = -(-depth * aspect_ratio // head_dim) * head_dim  # round up to whole heads
    windows = [
        MAX_SEQ_LEN // 2 if window_pattern[i % len(window_pattern)] == "S" else MAX_SEQ_LEN
        for i in range(depth)
    ]
    windows[-1] = MAX_SEQ_LEN
    return model_dim, model_dim // head_dim, windows


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
        logits = LOGIT_CAP * torch.tanh(logits / LOGIT_CAP)
        if targets is None:
            return logits
        loss = F.cross_entropy(
            logits.view(-1, VOCAB_SIZE), targets.reshape(-1), reduction=reduction
        )
        return loss.view(targets.shape) if reduction == "none" else loss


def build_model(shape: Mapping[str, Any]) -> GPT:
    """A freshly initialised GPT from the four shape knobs (``SHAPE_KNOBS``)."""
    dim, n_head, windows = model_shape(
        shape["DEPTH"], shape["ASPECT_RATIO"], shape["HEAD_DIM"], shape["WINDOW_PATTERN"]
    )
    return GPT(shape["DEPTH"], dim, n_head, windows)


# ---------------------------------------------------------------------------------------------
# Checkpoint: plain tensors and plain values only, so torch.load(weights_only=True) can read it
# and loading it never runs code that the training script chose.


class CheckpointError(ValueError):
    """A checkpoint that cannot be evaluated; the message says what the training script must fix."""


def save_checkpoint(path: str | Path, model: nn.Module, shape: Mapping[str, Any]) -> None:
    """Write the weights and the shape knobs to ``path`` (via a temporary file and a rename, so a
    run killed while saving leaves no half checkpoint behind)."""
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "shape": {k: shape[k] for k in SHAPE_KNOBS},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _check_shape(shape: Any) -> dict[str, Any]:
    if not isinstance(shape, dict) or set(shape) != set(SHAPE_KNOBS):
        raise CheckpointError(f"the checkpoint's 'shape' must hold exactly {list(SHAPE_KNOBS)}")
    for name in ("DEPTH", "ASPECT_RATIO", "HEAD_DIM"):
        value = shape[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
            raise CheckpointError(f"shape knob {name}={value!r} is not an integer in 1..4096")
    if not isinstance(shape["WINDOW_PATTERN"], str) or len(shape["WINDOW_PATTERN"]) > 64:
        raise CheckpointError("shape knob WINDOW_PATTERN must be a short string of S and L")
    try:
        model_shape(
            shape["DEPTH"], shape["ASPECT_RATIO"], shape["HEAD_DIM"], shape["WINDOW_PATTERN"]
        )
    except ValueError as e:
        raise CheckpointError(f"invalid shape knobs: {e}") from None
    return shape


def load_checkpoint(path: str | Path) -> tuple[GPT, dict[str, Any]]:
    """(the model rebuilt from this file's architecture with the saved weights, its shape knobs).

    Rejects, with a message naming the problem: a missing file or a link, anything that is not a
    weights-only checkpoint in this format, weights that are not finite, and weights whose names
    or shapes differ from what the architecture has for the recorded knobs (an edited training
    script that changed the architecture). The expected shapes are worked out on the ``meta``
    device first, so a checkpoint with absurd knobs cannot make the evaluator allocate them.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        raise CheckpointError(
            f"no checkpoint file at {path}: the training script must end by saving its model "
            "with save_checkpoint('model.pt', model, shape knobs) in its working directory"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path.name} is not a weights-only PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:300] if str(e) else ''}); save plain tensors with "
            "save_checkpoint, not pickled objects"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path.name} is not a {CHECKPOINT_FORMAT} checkpoint (write it with save_checkpoint)"
        )
    shape = _check_shape(payload.get("shape"))
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError("the checkpoint's 'state_dict' must map names to tensors")
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(shape).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        reshaped = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        parts = [
            f"{label} {names[:5]}{' ...' if len(names) > 5 else ''}"
            for label, names in (
                ("missing", missing),
                ("unexpected", extra),
                (
                    "wrong shape",
                    [f"{k} {got[k]} != {expected[k]}" for k in reshaped],
                ),
            )
            if names
        ]
        raise CheckpointError(
            f"the saved weights do not fit the task's architecture (model.py) for {shape}: "
            f"{'; '.join(parts)}. The training script may change how the model is trained, not "
            "its architecture"
        )
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"weight {name} has dtype {tensor.dtype}, not floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"weight {name} holds NaN or infinite values")
    model = build_model(shape)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    model.eval()
    return model, shape
