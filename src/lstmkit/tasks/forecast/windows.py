"""Turning series into training windows for a global forecaster, and back.

A window ends at an origin t (the last observed index): inputs are the L values y[t-L+1 .. t] (left-padded
with the series' first value when the series is shorter), targets the H values y[t+1 .. t+H]. Both are
divided by the window's level (mean of its last ``season`` values, or of |y| when that is not positive)
and shifted by −1, so series of any scale share one model. Inputs are cut into L/P patches of P values
(one LSTM step each) and every step also carries the one-hot seasonal phase of the first forecast step.
"""
from __future__ import annotations

import numpy as np


def level(x: np.ndarray, season: int) -> np.ndarray:
    """Window levels: x (N, L) -> (N,) mean of the last ``season`` values, |x| mean as the fallback."""
    lv = x[:, -max(season, 1):].mean(1)
    fallback = np.abs(x).mean(1) + 1e-8
    return np.where(lv > 1e-8, lv, fallback)


def cut(y: np.ndarray, origins: np.ndarray, L: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, L) and targets (N, H) (NaN past the series' end) for one series y (n,)."""
    pad = max(L - 1 - int(origins.min()), 0) if len(origins) else 0
    yp = np.concatenate([np.full(pad, y[0]), y, np.full(H, np.nan)])
    o = origins + pad
    x = yp[o[:, None] + np.arange(-L + 1, 1)[None, :]]
    t = yp[o[:, None] + np.arange(1, H + 1)[None, :]]
    return x, t


def features(x: np.ndarray, phase: np.ndarray, season: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs from raw windows: x (N, L) raw values, phase (N,) ints -> (inputs (N, L/P, P + S) float32,
    levels (N,)), S = season if season > 1 else 0."""
    lv = level(x, season)
    z = x / lv[:, None] - 1.0
    N, L = z.shape
    steps = z.reshape(N, L // patch, patch)
    if season > 1:
        onehot = np.eye(season, dtype=np.float32)[phase % season]
        steps = np.concatenate([steps, np.repeat(onehot[:, None, :], L // patch, axis=1)], axis=2)
    return steps.astype(np.float32), lv


def default_patch(season: int) -> int:
    """Values per LSTM step: the season for quarterly-like periods (≤ 4), half of it for longer ones."""
    if season <= 1:
        return 1
    return season if season <= 4 else max(season // 2, 1)


def default_input_length(horizon: int, season: int, patch: int) -> int:
    """max(2·horizon, 3·season), rounded up to a multiple of the patch."""
    L = max(2 * horizon, 3 * max(season, 1), 4)
    return int(np.ceil(L / patch) * patch)
