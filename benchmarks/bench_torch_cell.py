"""One step at a time through the torch frontend: lstmkit.torch.LSTMCell / GRUCell against torch.nn's.

    PYTHONPATH=src python benchmarks/bench_torch_cell.py [--rounds 9] [--steps 20]

A decoder's loop calls the cell once per step, so each call pays the frontend's whole per-call cost (the
module's checks, the conversions, in training autograd's bookkeeping and a backward per step), not only
arithmetic. Per step, for each cell (LSTM, GRU) and shape:
  * inference: ``--steps`` calls under torch.inference_mode, the state carried;
  * training: the same steps with autograd, then one backward of the sum of the h's (x requires grad);
  * lstmkit's streaming API for the same inference, ``lstmkit.torch.LSTM(...).stream()`` / ``GRU``'s (weights
    packed once, a snapshot: the fastest way to step a fixed model).
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


def peers(cell: str, B: int, X: int, H: int, steps: int) -> dict:
    """{(mode, name): a function running ``steps`` steps} for cell "LSTM" or "GRU"."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell + "Cell")(X, H)
    ours = getattr(lt, cell + "Cell")(X, H)
    ours.load_state_dict(ref.state_dict())
    layer = getattr(lt, cell)(X, H)
    layer.load_state_dict({f"{k}_l0": v for k, v in ref.state_dict().items()})
    stream = layer.stream(batch=B)
    xs = torch.randn(steps, B, X)
    xs_grad = xs.clone().requires_grad_(True)

    def zeros():
        return (torch.zeros(B, H), torch.zeros(B, H)) if cell == "LSTM" else torch.zeros(B, H)

    def infer(module):
        def run():
            with torch.inference_mode():
                h = zeros()
                for t in range(steps):
                    h = module(xs[t], h)
        return run

    def train(module):
        def run():
            h, outs = zeros(), []
            for t in range(steps):
                h = module(xs_grad[t], h)
                outs.append(h[0] if cell == "LSTM" else h)
            torch.stack(outs).sum().backward()
        return run

    def streamed():
        stream.reset()
        for t in range(steps):
            stream.step(xs[t])

    return {("inference", f"torch.nn.{cell}Cell"): infer(ref), ("inference", f"lstmkit.torch.{cell}Cell"): infer(ours),
            ("inference", f"lstmkit.torch.{cell}.stream()"): streamed,
            ("training", f"torch.nn.{cell}Cell"): train(ref), ("training", f"lstmkit.torch.{cell}Cell"): train(ours)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    engine.set_num_threads(THREADS)
    print(f"{THREADS} threads each; engine ISA {engine.isa()}; {args.steps} steps per call, median of "
          f"{args.rounds} rounds\n")
    print("| cell | B, X, H | mode | peer | µs per step | torch.nn's cell / peer |\n|---|---|---|---|---|---|")
    for cell, (B, X, H) in ((c, s) for c in ("LSTM", "GRU") for s in SHAPES):
        fns = peers(cell, B, X, H, args.steps)
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
            ref = statistics.median(times[(mode, f"torch.nn.{cell}Cell")])
            print(f"| {cell} | {B}, {X}, {H} | {mode} | {name} | {statistics.median(ts) * 1e6:.1f} | "
                  f"{ref / statistics.median(ts):.2f} |")


if __name__ == "__main__":
    main()
