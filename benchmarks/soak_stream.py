"""Soak: one stream steps 1,000,000 times; resident memory is sampled as it goes and must stay flat.

    python benchmarks/soak_stream.py [--steps 1000000] [--threads 1,2] [--out docs/soak.md]

Prints (and writes) RSS at the start, after warm-up and at the end, the growth after warm-up, and the
time per step, for each engine thread count in turn (on 2 threads each step hands the next step's recurrent
product to the pool: csrc/sequence/stream.h). Reads RSS from /proc/self/statm (Linux).
"""
import argparse
import os
import time

import numpy as np

import lstmkit


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--threads", default="1,2", help="comma-separated engine thread counts, one soak each")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = ["# Streaming soak", ""]
    for threads in (int(t) for t in args.threads.split(",")):
        lines += soak(args.steps, threads)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


def soak(steps: int, threads: int) -> list:
    """The markdown lines of one soak: a fresh stream stepped `steps` times on `threads` engine threads."""
    lstmkit.set_num_threads(threads)
    layer = lstmkit.LSTM(32, 128, num_layers=2, seed=0).eval()
    stream = layer.stream(batch=1)
    xs = np.random.default_rng(0).standard_normal((1000, 1, 32)).astype(np.float32)
    start = rss_mib()
    samples = []
    t0 = time.perf_counter()
    for k in range(steps):
        h = stream.step(xs[k % 1000])
        if k % 100_000 == 0:
            samples.append((k, rss_mib()))
    seconds = time.perf_counter() - t0
    end = rss_mib()
    warm = samples[1][1] if len(samples) > 1 else samples[0][1]
    assert np.all(np.isfinite(h))
    return [
        f"`python benchmarks/soak_stream.py --steps {steps} --threads {threads}`: LSTM(32 → 128, 2 layers), batch 1, "
        f"{threads} engine thread{'s' if threads > 1 else ''}.", "",
        "| step | RSS (MiB) |", "| --- | --- |", f"| before | {start:.1f} |",
        *(f"| {k:,} | {r:.1f} |" for k, r in samples), f"| {steps:,} (end) | {end:.1f} |", "",
        f"RSS growth after warm-up (step 100,000 → end): {end - warm:+.2f} MiB; "
        f"{seconds / steps * 1e6:.2f} µs per step.", "",
    ]

if __name__ == "__main__":
    main()
