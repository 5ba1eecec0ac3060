"""Forecast accuracy over many series: MAE, RMSE, sMAPE, MASE; interval coverage.

Shapes: actual and forecast (S, H) (one row per series and origin), scales (S,) the in-sample mean absolute
seasonal difference used by MASE.
"""
from __future__ import annotations

import numpy as np


def mase_scale(history: np.ndarray, m: int) -> float:
    """Mean |y_t − y_{t−m}| over the history (m = 1 when too short for a season); NaN when 0 or undefined."""
    y = np.asarray(history, float)
    lag = m if len(y) > m else 1
    if len(y) <= lag:
        return float("nan")
    s = float(np.mean(np.abs(y[lag:] - y[:-lag])))
    return s if s > 0 else float("nan")


def scores(actual: np.ndarray, forecast: np.ndarray, scales: np.ndarray) -> dict:
    """{'MAE', 'RMSE' (pooled over all points), 'sMAPE' (%, mean over points), 'MASE' (mean over series
    of each series' MAE / scale, series with an undefined scale left out)}."""
    err = forecast - actual
    denom = np.abs(actual) + np.abs(forecast)
    smape = np.where(denom > 0, 200.0 * np.abs(err) / np.where(denom > 0, denom, 1), 0.0)
    per_series = np.abs(err).mean(1) / scales
    return {"MAE": float(np.abs(err).mean()), "RMSE": float(np.sqrt((err**2).mean())),
            "sMAPE": float(smape.mean()), "MASE": float(np.nanmean(per_series))}


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of actual values inside [lo, hi]."""
    return float(np.mean((actual >= lo) & (actual <= hi)))
