"""What each LSTM/GRU variant buys: the same two tasks, the same budget, one row per variant (issue 9).

    PYTHONPATH=src python benchmarks/variants_experiment.py [--seeds 3] [--text-seeds 1] [--only plain,peephole] \
        [--out docs/variants_experiment.md]

Tasks (both with lstmkit.torch modules on the native engine, 2 threads):
  digits  scikit-learn's 8x8 digits read row by row (8 steps x 8 features), hidden 64, last state -> linear,
          Adam 1e-2, 12 epochs of batch 64; test accuracy on a fixed stratified 25% split.
  text    character LM on the first 200,000 characters of CPython's pydoc_data topics, embedding 32,
          hidden 128, truncated BPTT over 64 characters, batch 32, Adam 3e-3, 800 updates; bits per
          character on the next 20,000 characters (carried state, evaluation mode).
Each row: mean over seeds (digits 3, text 1 by default) of the final metric, the final training loss, and seconds
per epoch (digits)
or per 100 updates (text). Measures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import lstmkit
import lstmkit.torch as lt
from lstmkit.tasks.generate.data import load_text

THREADS = 2

# name -> (mode, options); the options are the keyword arguments of lstmkit.torch.LSTM / GRU
VARIANTS = {
    "plain": ("LSTM", {}),
    "forget_bias=1": ("LSTM", {"forget_bias": 1.0}),
    "peephole": ("LSTM", {"peephole": True}),
    "input_forget (coupled)": ("LSTM", {"input_forget": True}),
    "clip=3": ("LSTM", {"clip": 3.0}),
    "layer_norm": ("LSTM", {"layer_norm": True}),
    "zoneout (0.15, 0.05)": ("LSTM", {"zoneout": (0.15, 0.05)}),
    "recurrent_dropout=0.25": ("LSTM", {"recurrent_dropout": 0.25}),
    "gate HardSigmoid": ("LSTM", {"activations": ("HardSigmoid", "Tanh", "Tanh")}),
    "cell/hidden Softsign": ("LSTM", {"activations": ("Sigmoid", "Softsign", "Softsign")}),
    "cell/hidden Relu": ("LSTM", {"activations": ("Sigmoid", "Relu", "Relu")}),
    "cell/hidden Elu": ("LSTM", {"activations": ("Sigmoid", "Elu", "Elu")}),
    "hidden Affine (identity)": ("LSTM", {"activations": ("Sigmoid", "Tanh", "Affine")}),
    "gate Softsign (range −1..1)": ("LSTM", {"activations": ("Softsign", "Tanh", "Tanh")}),
    "GRU": ("GRU", {}),
    "GRU linear_before_reset=False": ("GRU", {"linear_before_reset": False}),
    "GRU layer_norm": ("GRU", {"layer_norm": True}),
}


def recurrent(mode, input_size, hidden, options):
    cls = lt.LSTM if mode == "LSTM" else lt.GRU
    return cls(input_size, hidden, batch_first=True, **options)


class DigitsNet(nn.Module):
    def __init__(self, mode, options):
        super().__init__()
        self.rnn = recurrent(mode, 8, 64, options)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h[-1])


def digits_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=0.25, stratify=d.target, random_state=0)
    return tuple(torch.from_numpy(np.asarray(a)) for a in (Xtr, ytr, Xte, yte))


def run_digits(mode, options, seed, data, epochs=12, batch=64):
    Xtr, ytr, Xte, yte = data
    torch.manual_seed(seed)
    net = DigitsNet(mode, options)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(Xtr), generator=gen)
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            loss = nn.functional.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = (time.perf_counter() - t0) / epochs
    net.eval()
    with torch.no_grad():
        accuracy = (net(Xte).argmax(1) == yte).float().mean().item()
    return {"metric": accuracy, "loss": loss.item(), "seconds": seconds}


class CharNet(nn.Module):
    def __init__(self, mode, options, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 32)
        self.rnn = recurrent(mode, 32, 128, options)
        self.head = nn.Linear(128, vocab)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(out), state


def text_data(train_chars=200_000, test_chars=20_000):
    _, text = load_text(None)
    chars = sorted(set(text[:train_chars + test_chars]))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text[:train_chars + test_chars]])
    return ids[:train_chars], ids[train_chars:], len(chars)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def run_text(mode, options, seed, data, updates=800, batch=32, bptt=64):
    train, test, vocab = data
    torch.manual_seed(seed)
    net = CharNet(mode, options, vocab)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    streams = train[: len(train) // batch * batch].view(batch, -1)  # (B, N): 32 contiguous streams
    state, pos = None, 0
    net.train()
    t0 = time.perf_counter()
    for _ in range(updates):
        if pos + bptt + 1 > streams.shape[1]:
            state, pos = None, 0
        x, y = streams[:, pos:pos + bptt], streams[:, pos + 1:pos + bptt + 1]
        logits, state = net(x, state)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        state, pos = detach(state), pos + bptt
    seconds = (time.perf_counter() - t0) / updates * 100
    net.eval()
    with torch.no_grad():
        logits, _ = net(test[None, :-1])
        nats = nn.functional.cross_entropy(logits[0], test[1:]).item()
    return {"metric": nats / math.log(2), "loss": loss.item() / math.log(2), "seconds": seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the digits runs")
    ap.add_argument("--text-seeds", type=int, default=1, help="seeds of the (slower) text runs")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--out", default="docs/variants_experiment.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(THREADS)
    lstmkit.set_num_threads(THREADS)
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    digits, text = digits_data(), text_data()
    rows = []
    for name in names:
        mode, options = VARIANTS[name]
        d = [run_digits(mode, options, s, digits) for s in range(args.seeds)]
        t = [run_text(mode, options, s, text) for s in range(args.text_seeds)]
        mean = lambda runs, key: statistics.mean(r[key] for r in runs)  # noqa: E731
        row = (f"| {name} | {mean(d, 'metric'):.3f} | {min(r['metric'] for r in d):.3f} | {mean(d, 'loss'):.3f} "
               f"| {mean(d, 'seconds'):.2f} | {mean(t, 'metric'):.3f} | {mean(t, 'loss'):.3f} "
               f"| {mean(t, 'seconds'):.2f} |")
        print(row, flush=True)
        rows.append(row)
    header = [
        "# LSTM/GRU variants: what each buys",
        "",
        f"Written by `benchmarks/variants_experiment.py` (digits {args.seeds} seeds, text {args.text_seeds}; "
        f"lstmkit.torch on the native engine, {THREADS} threads; torch {torch.__version__}).",
        "",
        "digits: 8x8 digits row by row, hidden 64, 12 epochs, test accuracy on a fixed 25% split. "
        "text: char LM on 200k characters of pydoc_data, hidden 128, 800 updates of 32x64 characters, "
        "bits per character on the next 20k characters.",
        "",
        "| variant | digits accuracy (mean) | digits (worst seed) | digits final loss | s / epoch "
        "| text bpc (held out) | text final train bpc | s / 100 updates |",
        "|---|---|---|---|---|---|---|---|",
    ]
    Path(args.out).write_text("\n".join(header + rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
