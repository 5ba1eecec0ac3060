"""The demo job: train a small LSTM in NumPy to predict the next value of a noisy periodic series.

It prints the model's summary, the loss per epoch and, on held-out windows, the LSTM's error beside
the naive "repeat the last value" forecast, so the number means something.
"""
from __future__ import annotations

import time

import numpy as np

from .layers import LSTM, Linear
from .optim import Adam, clip_grad_norm
from .summary import summary


def make_series(n: int, rng) -> np.ndarray:
    """Two seasonalities plus noise: (n,)."""
    t = np.arange(n)
    return (np.sin(2 * np.pi * t / 24) + 0.5 * np.sin(2 * np.pi * t / 7) + 0.1 * rng.standard_normal(n))


def windows(series, length):
    """Inputs (T, N, 1) and next-step targets (T, N, 1) from all windows of ``length + 1``."""
    idx = np.arange(len(series) - length)[:, None] + np.arange(length + 1)[None, :]
    w = series[idx].T[:, :, None]  # (T+1, N, 1)
    return w[:-1], w[1:]


def run(epochs: int = 15, hidden: int = 32, window: int = 48, batch: int = 64, seed: int = 0, print_fn=print):
    """Train and report; returns a dict with the final validation MSE of the LSTM and of the naive forecast."""
    rng = np.random.default_rng(seed)
    series = make_series(3000, rng).astype(np.float32)
    x, y = windows(series, window)
    split = int(0.8 * x.shape[1])
    x_train, y_train, x_val, y_val = x[:, :split], y[:, :split], x[:, split:], y[:, split:]

    lstm = LSTM(1, hidden, seed=seed)
    head = Linear(hidden, 1, seed=seed + 1)
    print_fn(summary(lstm))
    params = {**{f"lstm.{k}": v for k, v in lstm.params.items()}, **{f"head.{k}": v for k, v in head.params.items()}}
    opt = Adam(params, lr=1e-2)
    history = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(x_train.shape[1])
        losses = []
        lstm.train()
        for i in range(0, len(order), batch):
            b = order[i:i + batch]
            out, _ = lstm(x_train[:, b])  # (T, B, H)
            pred = head(out)  # (T, B, 1)
            err = pred - y_train[:, b]
            losses.append(float(np.mean(err**2)))
            g_head = head.backward(2 * err / err.size)
            g_lstm = lstm.backward(g_head.input)
            grads = {**{f"lstm.{k}": v for k, v in g_lstm.params.items()},
                     **{f"head.{k}": v for k, v in g_head.params.items()}}
            clip_grad_norm(grads, 1.0)
            opt.step(grads)
        lstm.eval()
        val = float(np.mean((head(lstm(x_val)[0])[-1] - y_val[-1]) ** 2))
        history.append(val)
        print_fn(f"epoch {epoch + 1:2d}  train mse {np.mean(losses):.4f}  val mse {val:.4f}  "
                 f"({time.perf_counter() - start:.1f}s)")
    naive = float(np.mean((x_val[-1] - y_val[-1]) ** 2))
    print_fn(f"held-out next-step MSE: LSTM {history[-1]:.4f}, naive (repeat last value) {naive:.4f}, "
             f"ratio {history[-1] / naive:.3f}")
    return {"val_mse": history[-1], "naive_mse": naive, "history": history}
