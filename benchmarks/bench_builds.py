"""Before/after timing of two builds of lstmkit (native engine and Python) on one machine, in one run.

    git worktree add /tmp/base <old commit>; (build its engine into /tmp/base/src/lstmkit)
    PYTHONPATH=src python benchmarks/bench_builds.py --base-src /tmp/base/src

Each case runs in a fresh process per build (two nanobind builds of one module cannot share a process: their
classes register under the same names), for ``--rounds`` rounds in alternating order; a process warms the
case up for 0.3 s, then takes the median of ``--calls`` timed calls; the table gives the median over rounds,
so both builds see the same background load; the slowest process of each build shows a process that ran in
a slow spell of the machine (docs/benchmarks.md: "Why (b) was bimodal"). The cases are the ones a driver
change moves: small batches (where the two-thread lockstep schedule applies) and mid/large batches (the row
split), for the plain, variant and quantised cells, inference and training, and the plain stream. base / this
above 1: the build on the path is faster.
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

T, X = 100, 32


def sequence_case(mode, B, H, train=False, **options):
    """engine.forward, or train_forward + backward, of one (T, B, X) batch."""
    from lstmkit import engine
    from lstmkit.params import RNNConfig, init_params

    cfg = RNNConfig(mode, X, H, **options)
    params = init_params(cfg, seed=0)
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    if not train:
        return lambda: engine.forward(cfg, params, x)
    dy = np.ones((T, B, cfg.output_size), np.float32)

    def step():
        _, _, workspace = engine.train_forward(cfg, params, x)
        engine.backward(cfg, params, x, dy, workspace=workspace)
    return step


def word_lm_case():
    """train_forward + backward of the recurrent layer of pytorch/examples' word_language_model (issue 18):
    2-layer LSTM 200 on a (35, 20, 200) batch with inter-layer dropout 0.2 (its mask an input, as
    lstmkit.torch passes it)."""
    from lstmkit import engine
    from lstmkit.params import RNNConfig, init_params

    cfg = RNNConfig("LSTM", 200, 200, num_layers=2, dropout=0.2)
    params = init_params(cfg, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((35, 20, 200)).astype(np.float32)
    masks = [(rng.random((35, 20, 200)) < 0.8).astype(np.float32) / np.float32(0.8)]
    dy = np.ones((35, 20, 200), np.float32)

    def step():
        _, _, workspace = engine.train_forward(cfg, params, x, dropout_masks=masks)
        engine.backward(cfg, params, x, dy, workspace=workspace, dropout_masks=masks)
    return step


def quantized_case(mode, dtype, B, H):
    """lstmkit.quantize(layer, dtype) called on one batch."""
    import lstmkit

    layer = (lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU)(X, H)
    x = np.random.default_rng(0).standard_normal((T, B, X)).astype(np.float32)
    q = lstmkit.quantize(layer, dtype)
    return lambda: q(x)


def stream_case(mode, B, H, steps=200):
    """``steps`` steps of a stream (case (e) of bench_engine.py: one native call per step)."""
    import lstmkit

    layer = (lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU)(X, H)
    xs = np.random.default_rng(0).standard_normal((steps, B, X)).astype(np.float32)
    s = layer.stream(batch=B)

    def run():
        s.reset()
        for x in xs:
            s.step(x)
    return run


CASES = {  # name -> (builder, its arguments): built inside the timing process
    "LSTM B=1 H=128": (sequence_case, ("LSTM", 1, 128), {}),
    "GRU B=1 H=128": (sequence_case, ("GRU", 1, 128), {}),
    "LSTM B=4 H=256": (sequence_case, ("LSTM", 4, 256), {}),  # below the forward's row split
    "LSTM B=8 H=256": (sequence_case, ("LSTM", 8, 256), {}),  # the forward's row split from 4 rows a thread
    "LSTM B=16 H=128": (sequence_case, ("LSTM", 16, 128), {}),
    "GRU B=16 H=128": (sequence_case, ("GRU", 16, 128), {}),
    "LSTM B=24 H=128": (sequence_case, ("LSTM", 24, 128), {}),  # near the row split's threshold
    "LSTM B=64 H=256": (sequence_case, ("LSTM", 64, 256), {}),
    "LSTM B=4 H=128 training": (sequence_case, ("LSTM", 4, 128), {"train": True}),  # the backward's row split
    "LSTM B=16 H=128 training": (sequence_case, ("LSTM", 16, 128), {"train": True}),
    "LSTM B=24 H=128 training": (sequence_case, ("LSTM", 24, 128), {"train": True}),
    "LSTM B=64 H=256 training": (sequence_case, ("LSTM", 64, 256), {"train": True}),
    "peephole B=1 H=128": (sequence_case, ("LSTM", 1, 128), {"peephole": True}),
    "GRU clip B=1 H=128": (sequence_case, ("GRU", 1, 128), {"clip": 3.0}),
    "layer_norm B=1 H=128": (sequence_case, ("LSTM", 1, 128), {"layer_norm": True}),
    "peephole B=4 H=128": (sequence_case, ("LSTM", 4, 128), {"peephole": True}),
    "peephole B=8 H=128": (sequence_case, ("LSTM", 8, 128), {"peephole": True}),
    "peephole B=16 H=128": (sequence_case, ("LSTM", 16, 128), {"peephole": True}),
    "peephole B=64 H=256": (sequence_case, ("LSTM", 64, 256), {"peephole": True}),
    "peephole B=4 H=128 training": (sequence_case, ("LSTM", 4, 128), {"train": True, "peephole": True}),
    "peephole B=16 H=128 training": (sequence_case, ("LSTM", 16, 128), {"train": True, "peephole": True}),
    "layer_norm B=8 H=128 training": (sequence_case, ("LSTM", 8, 128), {"train": True, "layer_norm": True}),
    "GRU B=4 H=128 training": (sequence_case, ("GRU", 4, 128), {"train": True}),
    "GRU B=8 H=128 training": (sequence_case, ("GRU", 8, 128), {"train": True}),
    "LSTM B=8 H=128 training": (sequence_case, ("LSTM", 8, 128), {"train": True}),
    "word LM layer training (2x200, B=20, T=35, dropout)": (word_lm_case, (), {}),
    "LSTM stream B=1 H=128, 200 steps": (stream_case, ("LSTM", 1, 128), {}),
    "GRU stream B=1 H=128, 200 steps": (stream_case, ("GRU", 1, 128), {}),
    "LSTM stream B=8 H=256, 200 steps": (stream_case, ("LSTM", 8, 256), {}),
    "int8 LSTM B=1 H=256": (quantized_case, ("LSTM", "int8", 1, 256), {}),
    "bf16 LSTM B=1 H=256": (quantized_case, ("LSTM", "bfloat16", 1, 256), {}),
    "int8 GRU B=1 H=256": (quantized_case, ("GRU", "int8", 1, 256), {}),
    "int8 LSTM B=16 H=256": (quantized_case, ("LSTM", "int8", 16, 256), {}),
    "bf16 LSTM B=16 H=256": (quantized_case, ("LSTM", "bfloat16", 16, 256), {}),
    "int8 LSTM B=64 H=256": (quantized_case, ("LSTM", "int8", 64, 256), {}),
    "bf16 LSTM B=64 H=256": (quantized_case, ("LSTM", "bfloat16", 64, 256), {}),  # GEMM-bound bf16
    "bf16 LSTM B=128 H=512": (quantized_case, ("LSTM", "bfloat16", 128, 512), {}),
}


def time_case(name: str, calls: int) -> float:
    """Median seconds of one call of case ``name`` in this process (after 0.3 s of untimed calls)."""
    builder, args, kwargs = CASES[name]
    fn = builder(*args, **kwargs)
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_fresh_process(src: str, name: str, calls: int, threads: int) -> float:
    """time_case in a new Python whose lstmkit comes from ``src``."""
    env = {**os.environ, "PYTHONPATH": src}
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"from lstmkit import engine; engine.set_num_threads({threads}); import bench_builds as b; "
            f"print(b.time_case({name!r}, {calls}))")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{name} with PYTHONPATH={src} failed:\n{run.stderr[-2000:]}")
    return float(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base-src", required=True, help="the src/ folder of the other checkout, its engine built in")
    p.add_argument("--this-src", default=os.path.join(os.path.dirname(__file__), "..", "src"),
                   help="the src/ folder of this checkout")
    p.add_argument("--rounds", type=int, default=5, help="processes per case and build, alternating")
    p.add_argument("--calls", type=int, default=15, help="timed calls per process")
    p.add_argument("--threads", type=int, default=2, help="engine threads for both builds")
    p.add_argument("--only", help="comma-separated substrings of case names (default: all)")
    args = p.parse_args(argv)
    srcs = {"base": os.path.abspath(args.base_src), "this": os.path.abspath(args.this_src)}
    for label, src in srcs.items():
        if not os.path.isdir(os.path.join(src, "lstmkit")):
            raise SystemExit(f"--{label}-src: expected a folder holding lstmkit/, got {src!r}")
    print(f"load average {os.getloadavg()[0]:.2f}; {args.threads} engine threads; median over {args.rounds} "
          f"processes of the median of {args.calls} calls\n")
    print("| case | base ms | this ms | base / this | base ms, slowest process | this ms, slowest process |\n"
          "|---|---|---|---|---|---|")
    results = {}
    for name in CASES:
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        times = {"base": [], "this": []}
        for r in range(args.rounds):
            for label in (("base", "this") if r % 2 == 0 else ("this", "base")):
                times[label].append(in_fresh_process(srcs[label], name, args.calls, args.threads))
        base, this = statistics.median(times["base"]), statistics.median(times["this"])
        each = {f"{label}_ms_each": [t * 1e3 for t in times[label]] for label in times}
        results[name] = {"base_ms": base * 1e3, "this_ms": this * 1e3, **each}
        print(f"| {name} | {base * 1e3:.3f} | {this * 1e3:.3f} | {base / this:.2f} | {max(times['base']) * 1e3:.3f} "
              f"| {max(times['this']) * 1e3:.3f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    print(json.dumps(results), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
