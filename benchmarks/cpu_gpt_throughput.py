"""Training throughput of the cpu-gpt task against a plain PyTorch loop of the same model.

The task's ``train.py`` (default configuration) runs as a trial through the real injection and
trial runner; its own summary block gives the tokens it trained on, its training seconds and the
val_bpb it reached in the budget. The reference is written here from stock PyTorch parts: the
same depth, width, heads, MLP size, vocabulary, context, batch and gradient accumulation, built
from ``nn.TransformerEncoderLayer`` with a causal mask and trained with one AdamW at a constant
rate, fed by the same data loader and scored by the same ``evaluate_bpb``. Task and reference
alternate in rounds, with the same thread count, so a shared machine's load hits both alike.
The ratio says what the task's extras (rotary positions, QK-norm, sliding windows, residual
scalars, Muon's orthogonalisation) cost in tokens per second.

    python benchmarks/cpu_gpt_throughput.py --budget 30 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from centaur_hpo.evaluate import ScriptEvaluator
from centaur_hpo.runner import parse_bytes
from centaur_hpo.spaces import space_for_script
from centaur_hpo.tasks.registry import script_task

SCRIPT, SPACE = script_task("cpu-gpt")


def run_task(folder: Path, budget: float, number: int) -> dict[str, Any]:
    """One trial of the task's default configuration; tokens/s from its own summary block."""
    space = space_for_script(SCRIPT, SPACE, None)
    ev = ScriptEvaluator(
        script=SCRIPT,
        space=space,
        run_dir=folder / "task",
        trial_budget=budget,
        memory_cap=parse_bytes(space.memory_cap),
    )
    result = ev.evaluate(number, space.default_config())
    if result.outcome != "ok":
        raise RuntimeError(f"the task's default run ended {result.outcome}: {result.error}")
    m = result.metrics
    return {
        "tokens_per_s": m["total_tokens_M"] * 1e6 / m["training_seconds"],
        "val_bpb": m["val_bpb"],
        "steps": m["num_steps"],
        "params_M": m["num_params_M"],
        "wall_s": result.time_wall,
    }


# The reference runs in its own process (like the task), reading the default knobs from the
# task's train.py and prepare.py so that both train exactly the same shape.
REFERENCE = r"""
import json, math, os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
from prepare import MAX_SEQ_LEN, VOCAB_SIZE, evaluate_bpb, make_dataloader
from centaur_hpo.script import read_knobs

k = read_knobs(os.path.join(sys.argv[1], "train.py"))
budget = float(sys.argv[2])
torch.set_num_threads(int(os.environ.get("CENTAUR_THREADS") or 1))
torch.manual_seed(0)
dim = -(-k["DEPTH"] * k["ASPECT_RATIO"] // k["HEAD_DIM"]) * k["HEAD_DIM"]
heads = dim // k["HEAD_DIM"]
accum = k["TOTAL_BATCH_SIZE"] // (k["DEVICE_BATCH_SIZE"] * MAX_SEQ_LEN)


class Reference(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB_SIZE, dim)
        self.wpe = nn.Embedding(MAX_SEQ_LEN, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True, bias=False,
        )
        self.blocks = nn.TransformerEncoder(layer, k["DEPTH"], enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, bias=False)
        self.head = nn.Linear(dim, VOCAB_SIZE, bias=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(MAX_SEQ_LEN))

    def forward(self, idx, targets, reduction="mean"):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T))
        x = self.blocks(x, mask=self.mask[:T, :T], is_causal=True)
        logits = self.head(self.norm(x))
        loss = F.cross_entropy(logits.view(-1, VOCAB_SIZE), targets.reshape(-1), reduction=reduction)
        return loss.view(targets.shape) if reduction == "none" else loss


model = Reference()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
loader = make_dataloader("train", k["DEVICE_BATCH_SIZE"], seed=0)
steps, start = 0, time.time()
while time.time() - start < budget:
    for _ in range(accum):
        x, y = next(loader)
        (model(x, y) / accum).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    steps += 1
seconds = time.time() - start
bpb = evaluate_bpb(model, batch_size=max(k["DEVICE_BATCH_SIZE"], 16))
print(json.dumps({
    "tokens_per_s": steps * k["TOTAL_BATCH_SIZE"] / seconds, "val_bpb": bpb, "steps": steps,
    "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
}))
"""


def run_reference(folder: Path, budget: float) -> dict[str, Any]:
    (folder / "reference.py").write_text(REFERENCE)
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, str(folder / "reference.py"), str(SCRIPT.parent), str(budget)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the reference loop failed:\n{out.stderr[-3000:]}")

    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.monotonic() - t0
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--budget", type=float, default=30.0, help="training seconds per run")
    ap.add_argument("--rounds", type=int, default=1, help="task/reference pairs, alternated")
    args = ap.parse_args()
    os.environ.setdefault("CENTAUR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "centaur-cache"))
    task_rows, ref_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            task_rows.append(run_task(folder, args.budget, r))
            ref_rows.append(run_reference(folder, args.budget))

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.fmean(row[key] for row in rows)

    threads = os.environ.get("CENTAUR_THREADS") or "1"
    print(
        f"cpu-gpt default configuration, {args.budget:g} s training budget, {args.rounds} "
        f"round(s), {threads} thread(s), load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| loop | params (M) | steps | training tokens/s | val_bpb | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in (
        ("cpu-gpt train.py (Muon + AdamW)", task_rows),
        ("plain PyTorch reference (AdamW)", ref_rows),
    ):
        print(
            f"| {name} | {mean(rows, 'params_M'):.3f} | {mean(rows, 'steps'):.0f} | "
            f"{mean(rows, 'tokens_per_s'):,.0f} | {mean(rows, 'val_bpb'):.4f} | "
            f"{mean(rows, 'wall_s'):.1f} |"
        )
    ratio = mean(task_rows, "tokens_per_s") / mean(ref_rows, "tokens_per_s")
    print(f"\ntask / reference tokens per second: {ratio:.2f}")
    if any(not math.isfinite(row["val_bpb"]) for row in task_rows + ref_rows):
        print("warning: a run ended with a non-finite val_bpb")


if __name__ == "__main__":
    main()
