"""The embedded LLM (SmolLM2-135M via llama.cpp) on the LLM agent's real 14-HP prompt.

A study history is built on the synthetic autoresearch landscape (random configurations, their
real outcomes: successes, out-of-memory and divergence with reasons). Then the LLM agent's own
prompt (fixed prefix: task, hardware, space, rules; then the history) is sent to the embedded
model with the grammar built from the space, ``--calls`` times, the history growing by one trial
per call as in a study while the prompt shows a window of ``--window`` trials (the best and the
most recent ones), so llama.cpp can reuse the cached fixed prefix. ``--cold`` further calls
start from an empty cache for comparison. Reported: share of valid replies (every reply is parsed
and validated strictly), prompt tokens, tokens evaluated, prompt-processing and generation
speed, latency per call, and the saving from the prompt cache.

    nice -n 10 python benchmarks/llm_embedded.py --calls 20 --cold 2 --window 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from centaur_hpo.llm import LLMClient
from centaur_hpo.llm.base import ParseError
from centaur_hpo.llm.grammar import config_constraint
from centaur_hpo.llm.local import LocalProvider
from centaur_hpo.llm.parse import parse_config
from centaur_hpo.llm.prompt import Observation
from centaur_hpo.llm.sampling import sample_uniform
from centaur_hpo.methods.llm_agent import LLMAgentSampler
from centaur_hpo.tasks import autoresearch_sim

TASK = (
    "Tune Karpathy's autoresearch train.py: a small GPT trained for 5 minutes per trial; "
    "minimise validation bits per byte."
)
HARDWARE = "1 NVIDIA H100, memory cap 76 GiB (trials above it die of out-of-memory)"


def history(n: int, seed: int) -> list[Observation]:
    """``n`` finished trials of random configurations on the synthetic landscape."""
    space, fn, _ = autoresearch_sim.make_task(seed)
    rng = np.random.default_rng(seed)
    out = [Observation(0, space.default_config(), None, "ok")]
    for number in range(n):
        config = space.default_config() if number == 0 else sample_uniform(space, rng)
        sim = fn(config, number)
        value = sim.value if sim.outcome == "ok" else None
        out.append(Observation(number, config, value, sim.outcome, sim.error or ""))
    return out[1:]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20, help="calls with a growing history (warm)")
    ap.add_argument("--cold", type=int, default=4, help="extra calls from an empty prompt cache")
    ap.add_argument("--history", type=int, default=6, help="finished trials before the first call")
    ap.add_argument(
        "--window", type=int, default=6, help="trials shown in the prompt (the agent's history)"
    )
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the raw per-call numbers here")
    args = ap.parse_args()

    space = autoresearch_sim.space()
    provider = LocalProvider(n_threads=args.threads)
    client = LLMClient(provider)
    agent = LLMAgentSampler(
        space, client, seed=args.seed, task=TASK, hardware=HARDWARE, history=args.window
    )
    constraint = config_constraint(space)
    budget = client.reply_budget(constraint)
    obs_all = history(args.history + args.calls + args.cold, args.seed)

    t0 = time.monotonic()
    provider.llm  # load the model once, outside the timings  # noqa: B018
    load_s = time.monotonic() - t0
    rows = []
    for i in range(args.calls + args.cold):
        cold = i >= args.calls
        n_hist = args.history + (i if not cold else args.calls)
        msgs = agent.build_messages(obs_all[:n_hist])
        if cold:
            provider.llm.reset()  # forget the cached prompt: the whole prompt is evaluated again
        reply = provider.complete(
            msgs, constraint=constraint, max_tokens=budget, temperature=0.7, seed=args.seed + i
        )
        try:
            config, notes = parse_config(reply.text, space)
            valid = space.validate(config) == [] and not notes
        except ParseError as e:
            valid, notes = False, [str(e)]
        evaluated = reply.extra.get("prompt_tokens_evaluated", reply.tokens_in)
        rows.append(
            {
                "call": i,
                "cold": cold,
                "history": n_hist,
                "valid": valid,
                "notes": notes,
                "prompt_tokens": reply.tokens_in,
                "evaluated": evaluated,
                "cached": reply.cached_tokens,
                "reply_tokens": reply.tokens_out,
                "latency_s": reply.latency_s,
                "prompt_s": reply.prompt_eval_s,
                "gen_s": reply.generation_s,
                "reply": reply.text,
            }
        )
        r = rows[-1]
        print(
            f"call {i:>2} {'cold' if cold else 'warm'} hist={n_hist:>2} valid={valid!s:<5} "
            f"prompt={r['prompt_tokens']} evaluated={evaluated} out={r['reply_tokens']} "
            f"{r['latency_s']:.2f}s (prompt {r['prompt_s']:.2f}s, gen {r['gen_s']:.2f}s)",
            flush=True,
        )

    def summary(sel: list[dict]) -> dict[str, float]:  # type: ignore[type-arg]
        pp = [r["evaluated"] / r["prompt_s"] for r in sel if r["prompt_s"] and r["evaluated"] > 8]
        gen = [r["reply_tokens"] / r["gen_s"] for r in sel if r["gen_s"]]
        lat = [r["latency_s"] for r in sel]
        return {
            "calls": len(sel),
            "valid": sum(r["valid"] for r in sel),
            "prompt_tokens_mean": statistics.mean(r["prompt_tokens"] for r in sel),
            "evaluated_tokens_mean": statistics.mean(r["evaluated"] for r in sel),
            "reply_tokens_mean": statistics.mean(r["reply_tokens"] for r in sel),
            "prompt_tok_s": statistics.median(pp) if pp else float("nan"),
            "gen_tok_s": statistics.median(gen) if gen else float("nan"),
            "latency_mean_s": statistics.mean(lat),
            "latency_p50_s": percentile(lat, 50),
            "latency_p90_s": percentile(lat, 90),
        }

    warm = [r for r in rows if not r["cold"]]
    cold = [r for r in rows if r["cold"]]
    # The first warm call starts from an empty cache too; it counts as cold for the comparison.
    cached_calls = warm[1:]
    cold_calls = warm[:1] + cold
    print()
    print(
        f"model {provider.path.name}, threads {provider.n_threads}, load {load_s:.1f}s, "
        f"cores {os.cpu_count()}, reply budget {budget} tokens, grammar {len(constraint.grammar)} chars"
    )
    for name, sel in (("all", rows), ("prefix cached", cached_calls), ("cold cache", cold_calls)):
        if not sel:
            continue
        s = summary(sel)
        print(
            f"{name:<14} valid {s['valid']}/{s['calls']} | prompt {s['prompt_tokens_mean']:.0f} tok "
            f"(evaluated {s['evaluated_tokens_mean']:.0f}), reply {s['reply_tokens_mean']:.0f} tok | "
            f"prompt {s['prompt_tok_s']:.0f} tok/s, generation {s['gen_tok_s']:.1f} tok/s | "
            f"latency mean {s['latency_mean_s']:.2f}s p50 {s['latency_p50_s']:.2f}s "
            f"p90 {s['latency_p90_s']:.2f}s"
        )
    if cached_calls and cold_calls:
        a, b = summary(cached_calls), summary(cold_calls)
        print(
            f"prompt cache: {a['evaluated_tokens_mean']:.0f} instead of "
            f"{b['evaluated_tokens_mean']:.0f} prompt tokens evaluated per call; latency "
            f"{a['latency_mean_s']:.2f}s vs {b['latency_mean_s']:.2f}s "
            f"({100 * (1 - a['latency_mean_s'] / b['latency_mean_s']):.0f}% saved)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
