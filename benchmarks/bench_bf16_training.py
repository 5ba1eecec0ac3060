"""bf16 mixed-precision training against float32 training on the engine itself, small and mid batches, in one
process: ``engine.train_forward`` + ``engine.backward`` with ``precision="bfloat16"`` and with float32, rounds
interleaved, the median of each. The ratio bf16 / float32 time (below 1: bf16 faster) is what
``lstmkit.torch.ops.BF16_MIN_BATCH`` (where autocast starts using the bf16 products) rests on.

    PYTHONPATH=src python benchmarks/bench_bf16_training.py [--rounds 25] [--threads 2]

Cases: LSTM and GRU, X = 32, T = 100, H = 128 at B = 1, 2, 4, 8, and H = 256 (X = 64) at B = 2 and 64.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from lstmkit import GRU, LSTM, engine

CASES = [("LSTM", B, 128, 32) for B in (1, 2, 4, 8)] + [("GRU", B, 128, 32) for B in (1, 2, 4)] + \
    [("LSTM", 2, 256, 64), ("LSTM", 64, 256, 64)]
T = 100


def case(mode: str, B: int, H: int, X: int, rounds: int) -> tuple[float, float]:
    layer = (LSTM if mode == "LSTM" else GRU)(X, H, seed=0)
    params = {k: np.asarray(v, np.float32) for k, v in layer.params.items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, X)).astype(np.float32)
    d_out = rng.standard_normal((T, B, H)).astype(np.float32)

    def run(precision):
        _, _, ws = engine.train_forward(layer.config, params, x, precision=precision)
        engine.backward(layer.config, params, x, d_out, workspace=ws, precision=precision)

    times = {"float32": [], "bfloat16": []}
    for p in times:  # warm-up
        run(p)
    for _ in range(rounds):
        for p, ts in times.items():
            t0 = time.perf_counter()
            run(p)
            ts.append(time.perf_counter() - t0)
    return float(np.median(times["float32"])), float(np.median(times["bfloat16"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    engine.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, engine path {engine.isa()}, {args.threads} threads, "
          f"median of {args.rounds} interleaved rounds, T = {T}\n")
    print("| cell | B | H | float32 ms | bf16 ms | bf16 / float32 |\n|---|---|---|---|---|---|")
    for mode, B, H, X in CASES:
        f32, bf16 = case(mode, B, H, X, args.rounds)
        print(f"| {mode} | {B} | {H} | {1e3 * f32:.3f} | {1e3 * bf16:.3f} | {bf16 / f32:.2f} |", flush=True)


if __name__ == "__main__":
    main()
