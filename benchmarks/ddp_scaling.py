"""Throughput (training samples/s) of ``lstmkit.tasks.training.fit`` with 1 and 2 processes (DDP, gloo,
loopback), same global batch, same model.

    PYTHONPATH=src python benchmarks/ddp_scaling.py [--epochs 2] [--threads 1] [--json out.json]

Runs: 1 process x T threads, 1 process x 2T threads (the single-process alternative for the same cores)
and 2 processes x T threads (torch.distributed.run). Each run times fit() only (process start-up and
rendezvous excluded) and reports samples/s = epochs * N / seconds; the ratio is 2-process / 1-process.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")


def worker(epochs: int, out: str, n: int, T: int, hidden: int, batch: int) -> None:
    import torch

    from lstmkit.tasks import distributed
    from lstmkit.tasks.classify.net import SequenceNet
    from lstmkit.tasks.training import TrainConfig, fit, seed_everything

    try:  # the native kernels have their own pool (default: every CPU); match torch's thread count
        from lstmkit import engine

        engine.set_num_threads(torch.get_num_threads())
    except Exception:  # engine not built: the NumPy reference backward
        pass
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, T, 8, generator=g)
    y = (x[:, :, 0].sum(1) > 0).long()
    lengths = torch.full((n,), T)
    seed_everything(0)
    model = SequenceNet(8, 2, hidden_size=hidden)

    def loss_fn(m, xb, lb, yb):
        return torch.nn.functional.cross_entropy(m(xb, lb), yb)

    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, progress=False)
    distributed.setup()
    distributed.barrier()
    t0 = time.perf_counter()
    fit(model, loss_fn, (x, lengths, y), None, cfg, task="bench", config={}, log=lambda *_: None)
    distributed.barrier()
    seconds = time.perf_counter() - t0
    if distributed.is_main():
        with open(out, "w") as f:
            json.dump({"seconds": seconds, "samples_per_s": epochs * n / seconds,
                       "processes": distributed.world_size(), "threads": torch.get_num_threads()}, f)
    distributed.teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(procs: int, threads: int, args) -> dict:
    out = tempfile.mktemp(suffix=".json")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": str(threads)}
    wargs = [HERE, "--worker", out, "--epochs", str(args.epochs), "--sequences", str(args.sequences),
             "--steps", str(args.steps),
             "--hidden", str(args.hidden), "--batch", str(args.batch)]
    if procs == 1:
        cmd = [sys.executable, *wargs]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs}", "--master-addr=127.0.0.1",
               f"--master-port={_free_port()}", *wargs]
    subprocess.run(cmd, env=env, check=True)
    with open(out) as f:
        res = json.load(f)
    os.unlink(out)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--sequences", type=int, default=2048, help="training sequences")
    ap.add_argument("--steps", type=int, default=40, help="sequence length")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64, help="global batch")
    ap.add_argument("--threads", type=int, default=1, help="threads per process")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.worker:
        return worker(args.epochs, args.worker, args.sequences, args.steps, args.hidden, args.batch)
    T = args.threads
    rows = {f"1 process x {T} thread(s)": run(1, T, args), f"1 process x {2 * T} threads": run(1, 2 * T, args),
            f"2 processes x {T} thread(s)": run(2, T, args)}
    base = rows[f"1 process x {T} thread(s)"]["samples_per_s"]
    print(f"N={args.sequences} sequences of {args.steps} steps, hidden {args.hidden}, global batch {args.batch}, "
          f"{args.epochs} epochs, {os.cpu_count()} CPUs")
    for name, r in rows.items():
        print(f"{name:28s} {r['samples_per_s']:9.1f} samples/s  ({r['seconds']:.2f} s)  "
              f"x{r['samples_per_s'] / base:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "cpus": os.cpu_count(), "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
