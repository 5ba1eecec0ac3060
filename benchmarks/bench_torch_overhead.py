"""Per-call overhead of the torch frontend at a small size, and torch.compile's graph breaks and recompiles.

A call of ``lstmkit.torch.LSTM(32, 32)`` on x (T=10, B=1, I=32) costs mostly Python and dispatch, not
arithmetic, so its time is the frontend's overhead: the module's checks, the custom op's dispatch, the
conversion to NumPy and back. Printed: the best of ``--repeats`` timeit runs of ``--number`` calls each, in µs
of the process's CPU time per call (one torch and one engine thread; CPU time rather than wall time, since on
a shared machine the wall clock counts the other processes' turns too), for eval-mode forward, train-mode
forward + backward, and the same for torch.nn.LSTM (the ratio is what to compare across machines and
sessions); then, for ``torch.compile(fullgraph=True)`` of a plain LSTM, a variant LSTM and a GRUCell in both
modes, Dynamo's graph breaks and the graphs compiled over several calls (1 means no recompile per call).
The load average is printed beside the times: contention still inflates them (caches, frequency).

    python benchmarks/bench_torch_overhead.py [--number 200] [--repeats 15]
"""
from __future__ import annotations

import argparse
import os
import time
import timeit

import torch

import lstmkit.torch as lt
from lstmkit import engine


def _timings(number: int, repeats: int) -> dict:
    """µs per call, best of ``repeats``, for each (implementation, mode)."""
    torch.manual_seed(0)
    x = torch.randn(10, 1, 32)
    result = {}
    for name, cls in (("lstmkit", lt.LSTM), ("torch.nn", torch.nn.LSTM)):
        model = cls(32, 32)
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)

        def train():
            out, _ = model(x)
            out.sum().backward()

        for mode, fn in (("eval forward", infer), ("train forward+backward", train)):
            model.train(mode != "eval forward")
            fn()  # warm up
            best = min(timeit.repeat(fn, number=number, repeat=repeats, timer=time.process_time)) / number
            result[(name, mode)] = best * 1e6
    return result


def _compile_counts(calls: int = 5) -> dict:
    """Graph breaks and compiled graphs of torch.compile(fullgraph=True) over ``calls`` calls per (model, mode)."""
    from torch._dynamo.utils import counters

    models = {"LSTM": lambda: lt.LSTM(32, 32), "LSTM peephole+layer_norm": lambda: lt.LSTM(32, 32, peephole=True,
                                                                                             layer_norm=True),
              "GRUCell": lambda: lt.GRUCell(32, 32)}
    counts = {}
    for name, make in models.items():
        for mode in ("eval", "train"):
            torch._dynamo.reset()
            counters.clear()
            compiled = torch.compile(make().train(mode == "train"), fullgraph=True, backend="aot_eager")
            for _ in range(calls):
                x = torch.randn(10, 1, 32, requires_grad=mode == "train")
                out = compiled(x[0] if name == "GRUCell" else x)
                if mode == "train":
                    (out if name == "GRUCell" else out[0]).sum().backward()
            counts[(name, mode)] = (sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine.set_num_threads(1)  # one thread each, so that CPU time is the call's cost
    load = os.getloadavg()
    times = _timings(args.number, args.repeats)
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| call (B=1, H=32, T=10) | lstmkit µs | torch.nn µs | lstmkit / torch.nn |")
    print("|---|---:|---:|---:|")
    for mode in ("eval forward", "train forward+backward"):
        ours, theirs = times[("lstmkit", mode)], times[("torch.nn", mode)]
        print(f"| {mode} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    for (name, mode), (breaks, graphs) in _compile_counts().items():
        print(f"torch.compile(fullgraph=True) {name} {mode}, 5 calls: graph breaks {breaks}, graphs compiled {graphs}")


if __name__ == "__main__":
    main()
