"""Inference timing: lstmkit's native engine against torch.nn.LSTM / torch.nn.GRU on the CPU.

    PYTHONPATH=src python benchmarks/bench_engine.py [--repeats 20]

Prints a markdown table of median times (ms) and the ratio engine / torch (below 1: the engine is
faster). torch runs with 2 threads (torch.set_num_threads(2)); the engine is single-threaded. Measures
only; it asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lstmkit import engine
from lstmkit.params import RNNConfig, init_params

CASES = [  # (B, H, X, T)
    (1, 128, 32, 100),
    (64, 256, 64, 100),
]


def median_ms(fn, repeats: int) -> float:
    fn()  # warm up (allocations, packing, torch's first-call dispatch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if not engine.available():
        raise SystemExit("lstmkit._engine is not built")
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; engine single-threaded; float32; median of {args.repeats}\n")
    print("| mode | B | H | X | T | engine ms | torch ms | engine / torch |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("LSTM", "GRU"):
        for B, H, X, T in CASES:
            config = RNNConfig(mode, input_size=X, hidden_size=H)
            params = init_params(config, seed=0, dtype="float32")
            x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
            module = getattr(torch.nn, mode)(X, H)
            module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
            module.eval()
            xt = torch.from_numpy(x)

            def run_torch():
                with torch.inference_mode():
                    module(xt)

            t_engine = median_ms(lambda: engine.forward(config, params, x), args.repeats)
            t_torch = median_ms(run_torch, args.repeats)
            print(f"| {mode} | {B} | {H} | {X} | {T} | {t_engine:.3f} | {t_torch:.3f} | {t_engine / t_torch:.2f} |")


if __name__ == "__main__":
    main()
