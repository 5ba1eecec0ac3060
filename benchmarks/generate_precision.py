"""The char LM (lstmkit generate's CharLM) trained in float32 and with bfloat16 products (precision='bfloat16',
docs/mixed_precision.md), one after the other in this process, the same seed, data and schedule: validation bits
per character every --eval-every steps, the wall time and the training rate of each.

    PYTHONPATH=src python benchmarks/generate_precision.py [--steps 600] [--seeds 0] [--out FILE]

Data: CPython's pydoc_data topics, split as ``lstmkit generate`` splits it (the last 5 % held out, the 2 % before
it for validation, of which the first --val-chars are scored). Model: LSTM 512, embedding 512 tied to the output
layer, batch 32 × 128 characters, AdamW lr 5e-3 with 20 warm-up steps then cosine decay (stream training).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from lstmkit import engine
from lstmkit.tasks.generate import CharLM
from lstmkit.tasks.generate.data import load_text


def run(precision: str, seed: int, steps: int, eval_every: int, train: str, val: str) -> dict:
    lm = CharLM(hidden_size=512, embed_dim=512, tie_weights=True, batch_size=32, seq_len=128, steps=steps,
                eval_every=eval_every, lr=5e-3, warmup=20, precision=precision, seed=seed)
    start = time.perf_counter()
    lm.fit(train, val)
    seconds = time.perf_counter() - start
    return {"precision": lm.history_["precision"], "seed": seed, "seconds": seconds,
            "chars_per_s": steps * 32 * 128 / seconds,
            "val_bpc": [(e["step"], e["val_bpc"]) for e in lm.history_["evaluations"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, each trained in both precisions")
    p.add_argument("--val-chars", type=int, default=20000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="append the table (markdown) to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    engine.set_num_threads(args.threads)
    _, text = load_text(None)
    n = len(text)
    n_test, n_val = int(n * 0.05), int(n * 0.02)
    train, val = text[:n - n_test - n_val], text[n - n_test - n_val:n - n_test][:args.val_chars]
    load = os.getloadavg()
    results = [run(precision, int(seed), args.steps, args.eval_every, train, val)
               for seed in args.seeds.split(",") for precision in ("float32", "bfloat16")]
    steps = [s for s, _ in results[0]["val_bpc"]]
    lines = [f"CharLM precision run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
             f"{platform.processor() or platform.machine()}, engine path {engine.isa()}, {args.threads} threads, "
             f"load average at the start {load[0]:.2f}, at the end {os.getloadavg()[0]:.2f}", "",
             "| precision | seed | " + " | ".join(f"val bpc @{s}" for s in steps) + " | seconds | chars/s |",
             "|---" * (len(steps) + 4) + "|"]
    for r in results:
        lines.append(f"| {r['precision']} | {r['seed']} | " + " | ".join(f"{b:.4f}" for _, b in r["val_bpc"])
                     + f" | {r['seconds']:.1f} | {r['chars_per_s']:,.0f} |")
    fp32 = {r["seed"]: r for r in results if r["precision"] == "float32"}
    for r in results:
        if r["precision"] == "bfloat16":
            base = fp32[r["seed"]]
            lines.append(f"\nseed {r['seed']}: bfloat16 / float32 speed {base['seconds'] / r['seconds']:.2f}×, "
                         f"final val bpc {r['val_bpc'][-1][1] - base['val_bpc'][-1][1]:+.4f}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as f:
            f.write("\n" + table + "\n")


if __name__ == "__main__":
    main()
