"""The AVX2 int8 inner loops side by side: "madd" and "pairs" (csrc/quant/quant_gemm.h), on this CPU, one run.

    PYTHONPATH=src python benchmarks/bench_int8_kernels.py [--rounds 5] [--threads 1,2] [--cases b,c,d]

Both loops compute the same integers (tests/test_quantize.py checks the bits), so which one a CPU runs is a
matter of time alone: the engine picks "pairs" on AMD family 17h (Zen 1 and 2, one pipe for both multiplies)
and "madd" elsewhere. This script is the evidence for that choice on the CPU it runs on: the int8 cases of
``bench_engine.py`` ((b), (c), (d), LSTM inference) under each loop, with the float32 engine beside them.
LSTMKIT_INT8_KERNEL is read at import, so every (loop, threads) pair runs in a fresh process, in alternating
order for ``--rounds`` rounds; a process warms up for 0.3 s, then takes the median of its timed calls (at least
5, at least 1 s). The table gives the median over rounds of each; "pairs / madd" above 1: madd is faster.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

CASES = {"b": (16, 128, 32, 100), "c": (64, 256, 64, 100), "d": (128, 512, 128, 50)}  # B, H, X, T (bench_engine.py)
WHAT = ("int8", "float32")


def measure(case: str, threads: int) -> dict:
    """{what: median ms} of one case in this process (the loop is the one LSTMKIT_INT8_KERNEL picked)."""
    import lstmkit
    from lstmkit import _engine, engine

    engine.set_num_threads(threads)
    B, H, X, T = CASES[case]
    layer = lstmkit.LSTM(X, H, seed=0, dtype="float32").eval()
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    models = {"int8": lstmkit.quantize(layer, "int8"), "float32": layer}
    out = {"kernel": _engine.quant_int8_kernel()}
    for what, model in models.items():
        start = time.perf_counter()
        while time.perf_counter() - start < 0.3:
            model(x)
        times, start = [], time.perf_counter()
        while len(times) < 5 or time.perf_counter() - start < 1.0:
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
        out[what] = 1e3 * statistics.median(times)
    return out


def run_child(case: str, threads: int, kernel: str) -> dict:
    env = dict(os.environ, LSTMKIT_INT8_KERNEL=kernel)
    proc = subprocess.run([sys.executable, __file__, "--child", f"{case},{threads}"], env=env, capture_output=True,
                          text=True, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    if got["kernel"] != kernel:
        raise SystemExit(f"LSTMKIT_INT8_KERNEL={kernel} ran {got['kernel']!r}: not the AVX2 quantised path")
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--cases", default="b,c,d", help="comma-separated case letters of bench_engine.py")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, threads = args.child.split(",")
        print(json.dumps(measure(case, int(threads))))
        return
    sys.path.insert(0, os.path.dirname(__file__))
    from bench_engine import cpu_heading

    print(f"CPU: {cpu_heading()}; {args.rounds} rounds, fresh process per (loop, threads), alternating\n")
    print("| case | threads | int8 madd ms | int8 pairs ms | pairs / madd | float32 ms | float32 / int8 madd |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            runs = {"madd": [], "pairs": []}
            for r in range(args.rounds):
                for kernel in (("madd", "pairs") if r % 2 == 0 else ("pairs", "madd")):
                    runs[kernel].append(run_child(case, threads, kernel))
            med = {k: {w: statistics.median(run[w] for run in v) for w in WHAT} for k, v in runs.items()}
            f32 = statistics.median([run["float32"] for v in runs.values() for run in v])
            madd, pairs = med["madd"]["int8"], med["pairs"]["int8"]
            print(f"| ({case}) B={CASES[case][0]} H={CASES[case][1]} | {threads} | {madd:.2f} | {pairs:.2f} | "
                  f"{pairs / madd:.2f}x | {f32:.2f} | {f32 / madd:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
