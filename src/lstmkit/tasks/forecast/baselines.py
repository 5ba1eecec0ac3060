"""Classical forecasting baselines, one series at a time: y (n,) history -> (H,) forecast.

naive (last value), seasonal naive (the last season repeated), Theta (statsmodels ThetaModel, multiplicative
deseasonalising when the series is positive and has two full seasons) and ETS (statsmodels Holt-Winters with
additive damped trend and, when possible, multiplicative season). A statsmodels fit that fails falls back to
seasonal naive, and the number of fallbacks is reported.
"""
from __future__ import annotations

import warnings

import numpy as np


def naive(y: np.ndarray, H: int, m: int) -> np.ndarray:
    return np.full(H, y[-1], dtype=float)


def seasonal_naive(y: np.ndarray, H: int, m: int) -> np.ndarray:
    if m <= 1 or len(y) < m:
        return naive(y, H, m)
    last = y[-m:]
    return np.asarray([last[k % m] for k in range(H)], dtype=float)


def _seasonal_ok(y, m):
    return m > 1 and len(y) >= 2 * m


def theta(y: np.ndarray, H: int, m: int) -> np.ndarray:
    from statsmodels.tsa.forecasting.theta import ThetaModel

    positive = bool(np.all(y > 0))
    model = ThetaModel(y, period=m if m > 1 else None, deseasonalize=_seasonal_ok(y, m) and positive,
                       method="multiplicative" if positive else "additive", use_test=False)
    return np.asarray(model.fit().forecast(H), dtype=float)


def ets(y: np.ndarray, H: int, m: int) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = None
    if _seasonal_ok(y, m):
        seasonal = "mul" if np.all(y > 0) else "add"
    trend = "add" if len(y) >= 6 else None
    model = ExponentialSmoothing(y, trend=trend, damped_trend=trend is not None, seasonal=seasonal,
                                 seasonal_periods=m if seasonal else None, initialization_method="estimated")
    return np.asarray(model.fit().forecast(H), dtype=float)


METHODS = {"naive": naive, "seasonal naive": seasonal_naive, "theta": theta, "ets (damped)": ets}


def forecast_all(method: str, histories: list, H: int, m: int, progress: bool = False) -> tuple[np.ndarray, int]:
    """(S, H) forecasts for every history with ``method``, and how many fell back to seasonal naive.
    ``progress``: a bar per method on stderr when it is a terminal (statsmodels' fits can take minutes)."""
    import sys

    fn = METHODS[method]
    out, fallbacks = [], 0
    bar = None
    if progress and sys.stderr.isatty():
        from ..._optional import require

        bar = require("tqdm", "tasks").tqdm(total=len(histories), desc=method, unit="series", leave=False,
                                            file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in histories:
            if bar is not None:
                bar.update(1)
            try:
                f = fn(np.asarray(y, float), H, m)
                if not np.all(np.isfinite(f)):
                    raise ValueError("non-finite forecast")
            except Exception:  # noqa: BLE001 - any statsmodels failure: use the simple method instead
                f, fallbacks = seasonal_naive(np.asarray(y, float), H, m), fallbacks + 1
            out.append(f)
    if bar is not None:
        bar.close()
    return np.asarray(out), fallbacks
