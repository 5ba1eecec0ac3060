"""The engine beside torch's OpenMP threads: lstmkit's own thread pool against torch's team
(``engine.share_openmp_team``), in the word_language_model shape (2-layer LSTM 200, (35, 20, 200), inter-layer
dropout masks), the engine's training forward timed right after a torch op, as inside a torch program.

    PYTHONPATH=src python benchmarks/bench_torch_threads.py [--calls 40]

For each thing run before the call (nothing; torch's bernoulli_, as a dropout mask; a torch GEMM as large as the
word LM's decoder, 700 x 200 x 10,000), the median ms of the engine's call on each thread set and their ratio
(own / team: above 1, sharing torch's threads is faster). 2 threads each; prints the CPU's ISA path. Measures
only; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import lstmkit.torch  # noqa: F401 - loads torch's OpenMP runtime and shares it, as a torch program does
from lstmkit import engine
from lstmkit.params import RNNConfig, init_params

T, B, H, LAYERS = 35, 20, 200, 2


def median_ms(before, run, calls: int) -> float:
    times = []
    for _ in range(calls):
        before()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[5:])  # the first calls: allocation, thread start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(2)
    engine.set_num_threads(2)
    cfg = RNNConfig("LSTM", input_size=H, hidden_size=H, num_layers=LAYERS)
    params = init_params(cfg, seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    masks = [((rng.random((T, B, H)) > 0.2) / 0.8).astype(np.float32) for _ in range(LAYERS - 1)]
    mask_buffer, a, w = torch.empty(T, B, H), torch.randn(T * B, H), torch.randn(10_000, H)
    befores = {"nothing": lambda: None, "torch bernoulli_": lambda: mask_buffer.bernoulli_(0.8),
               "torch GEMM 700x200x10000": lambda: torch.mm(a, w.t())}
    run = lambda: engine.train_forward(cfg, params, x, dropout_masks=masks)  # noqa: E731
    print(f"engine ISA {engine.isa()}; OpenMP runtime: {engine.openmp_team() or 'none'}")
    print("| before each call | lstmkit's own threads ms | torch's team ms | own / team |\n|---|---|---|---|")
    for name, before in befores.items():
        ms = {}
        for share in (False, True, False, True):  # alternating, best of two medians each
            engine.share_openmp_team(share)
            ms[share] = min(ms.get(share, float("inf")), median_ms(before, run, args.calls))
        print(f"| {name} | {ms[False]:.2f} | {ms[True]:.2f} | {ms[False] / ms[True]:.2f} |")
    engine.share_openmp_team(True)


if __name__ == "__main__":
    main()
