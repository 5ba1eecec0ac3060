"""One step at a time through the torch frontend: lstmkit.torch.LSTMCell against torch.nn.LSTMCell.

    PYTHONPATH=src python benchmarks/bench_torch_cell.py [--rounds 9] [--steps 20]

A decoder's loop calls the cell once per step, so each call pays the frontend's whole per-call cost (the
module's and the custom operator's checks and dispatch, packing the weights for the engine, and in training
autograd's bookkeeping and a backward per step), not only arithmetic. Per step, for each shape:
  * inference: ``--steps`` calls under torch.inference_mode, the state carried;
  * training: the same steps with autograd, then one backward of the sum of the h's (x requires grad);
  * lstmkit's streaming API for the same inference, ``lstmkit.torch.LSTM(...).stream()`` (weights packed once,
    a snapshot: the documented fast path for step-by-step inference).
2 threads each (torch.set_num_threads, lstmkit.engine.set_num_threads); peers in rotating order per round,
the median over rounds of each round's mean per step. Above 1 in the ratio column: lstmkit is faster.
Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import lstmkit.torch as lt
from lstmkit import engine

SHAPES = ((1, 32, 128), (32, 64, 256))  # (B, X, H)
THREADS = 2


def peers(B: int, X: int, H: int, steps: int) -> dict:
    """{(mode, name): a function running ``steps`` steps}."""
    torch.manual_seed(0)
    ref = torch.nn.LSTMCell(X, H)
    ours = lt.LSTMCell(X, H)
    ours.load_state_dict(ref.state_dict())
    layer = lt.LSTM(X, H)
    layer.load_state_dict({f"{k}_l0": v for k, v in ref.state_dict().items()})
    stream = layer.stream(batch=B)
    xs = torch.randn(steps, B, X)
    xs_grad = xs.clone().requires_grad_(True)

    def infer(cell):
        def run():
            with torch.inference_mode():
                h = (torch.zeros(B, H), torch.zeros(B, H))
                for t in range(steps):
                    h = cell(xs[t], h)
        return run

    def train(cell):
        def run():
            h, outs = (torch.zeros(B, H), torch.zeros(B, H)), []
            for t in range(steps):
                h = cell(xs_grad[t], h)
                outs.append(h[0])
            torch.stack(outs).sum().backward()
        return run

    def streamed():
        stream.reset()
        for t in range(steps):
            stream.step(xs[t])

    return {("inference", "torch.nn.LSTMCell"): infer(ref), ("inference", "lstmkit.torch.LSTMCell"): infer(ours),
            ("inference", "lstmkit.torch.LSTM.stream()"): streamed,
            ("training", "torch.nn.LSTMCell"): train(ref), ("training", "lstmkit.torch.LSTMCell"): train(ours)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    engine.set_num_threads(THREADS)
    print(f"{THREADS} threads each; engine ISA {engine.isa()}; {args.steps} steps per call, median of "
          f"{args.rounds} rounds\n")
    print("| B, X, H | mode | peer | µs per step | torch.nn.LSTMCell / peer |\n|---|---|---|---|---|")
    for B, X, H in SHAPES:
        fns = peers(B, X, H, args.steps)
        for fn in fns.values():  # first calls: allocation, packing, oneDNN primitives
            fn()
        times = {name: [] for name in fns}
        names = list(fns)
        for r in range(args.rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append((time.perf_counter() - t0) / args.steps)
        for (mode, name), ts in times.items():
            ref = statistics.median(times[(mode, "torch.nn.LSTMCell")])
            print(f"| {B}, {X}, {H} | {mode} | {name} | {statistics.median(ts) * 1e6:.1f} | "
                  f"{ref / statistics.median(ts):.2f} |")


if __name__ == "__main__":
    main()
