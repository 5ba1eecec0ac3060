"""The char LM's training step with torch's nn.Dropout against lstmkit's (``tasks/generate/net.py``'s Dropout:
the CPU's masks drawn by NumPy's PCG64), everything else the same: the two networks start from the same weights
and take turns, ``--steps`` steps each per round, and the script prints each one's median step time and their
ratio (above 1: lstmkit's dropout is faster).

    PYTHONPATH=src python benchmarks/bench_charlm_dropout.py [--rounds 6] [--steps 4]

Model: `benchmarks/tasks_run.py text-bf16`'s network in float32 (LSTM 512, embedding 512 tied to the output layer,
dropout 0.65 on the LSTM's output and 0.25 on the embedding, which are the two masks a step draws), batch 32 × 128
characters, 100 symbols, AdamW and gradient-norm clipping as stream training does; 2 threads (torch and engine).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench_engine import cpu_name
from lstmkit import engine
from lstmkit.tasks.generate.net import CharNet

THREADS, VOCAB, BATCH, SEQ = 2, 100, 32, 128


def make(torch_dropout: bool):
    """(network, optimiser) from the same seed; with ``torch_dropout`` its two dropouts are torch.nn.Dropout."""
    torch.manual_seed(0)
    net = CharNet(VOCAB, 512, 512, 1, "lstm", 0.65, embed_dropout=0.25, tie_weights=True).train()
    if torch_dropout:
        net.embed_drop, net.drop = torch.nn.Dropout(0.25), torch.nn.Dropout(0.65)
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3)


def steps(net, opt, chunk, count: int) -> list[float]:
    """Seconds of each of ``count`` training steps on ``chunk`` (B, T + 1), the state carried and detached."""
    state, times = None, []
    for _ in range(count):
        start = time.perf_counter()
        logits, state = net(chunk[:, :-1], state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    engine.set_num_threads(THREADS)
    chunk = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(1))
    peers = {"torch nn.Dropout": make(True), "lstmkit Dropout (NumPy masks)": make(False)}
    for net, opt in peers.values():
        steps(net, opt, chunk, 2)  # first calls: allocation, the engine's workspaces
    times = {name: [] for name in peers}
    for r in range(args.rounds):
        for name in list(peers)[r % 2:] + list(peers)[:r % 2]:
            times[name] += steps(*peers[name], chunk, args.steps)
    print(f"{cpu_name()}; engine ISA {engine.isa()}; {THREADS} threads; {args.rounds} rounds x {args.steps} steps")
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, m in medians.items():
        print(f"| {name} | {1e3 * m:.1f} ms per step |")
    base, ours = medians.values()
    print(f"torch's / lstmkit's: {base / ours:.3f}")


if __name__ == "__main__":
    main()
