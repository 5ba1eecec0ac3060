"""Classical forecasting baselines, one series at a time: y (n,) history -> (H,) forecast.

naive (last value), seasonal naive (the last season repeated), Theta (statsmodels ThetaModel, multiplicative
deseasonalising when the series is positive and has two full seasons) and ETS (statsmodels Holt-Winters with
additive damped trend and, when possible, multiplicative season), and, when the ``prophet`` extra is installed,
Prophet (not run by default: ~0.3 s a series). A fit that fails falls back to seasonal naive, and the number of
fallbacks is reported.
"""
from __future__ import annotations

import contextlib
import logging
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


SEASONALITY_Z = 1.645  # the two-sided 90% normal quantile of the M4 benchmarks' test


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """The M4 benchmarks' seasonality test (Theta's rule there): y (n,) is seasonal with period m when
    |r_m| > 1.645·sqrt((1 + 2·Σ_{k=1}^{m−1} r_k²) / n), r_k its autocorrelation at lag k (the 90% bound of
    Bartlett's formula). False when m == 1, when y has fewer than 3m values (the M4 code's rule) or is constant.
    The autocorrelation does not change when y is shifted or scaled, so a shifted series tests the same."""
    y = np.asarray(y, np.float64)
    if m <= 1 or len(y) < 3 * m or np.ptp(y) == 0:
        return False
    from ..._optional import require

    r = require("statsmodels.tsa.stattools", "tasks").acf(y, nlags=m, fft=False)  # (m + 1,): r_0 = 1 .. r_m
    limit = SEASONALITY_Z * np.sqrt((1 + 2 * np.sum(r[1:m] ** 2)) / len(y))
    return bool(abs(r[m]) > limit)


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


def prophet(y: np.ndarray, H: int, m: int) -> np.ndarray:
    """Prophet (MAP fit, no uncertainty sampling) on y read as one value a day, so the season of ``m`` steps is
    a custom seasonality of period m days (Fourier order m // 2, at most 10) whatever the data's calendar;
    multiplicative when y is positive, as Theta and ETS here; no season unless two full seasons are seen."""
    import pandas as pd

    with _quiet_prophet():
        from prophet import Prophet

        seasonal = _seasonal_ok(y, m)
        model = Prophet(yearly_seasonality=False, weekly_seasonality=False, daily_seasonality=False,
                        seasonality_mode="multiplicative" if seasonal and np.all(y > 0) else "additive",
                        uncertainty_samples=0)
        if seasonal:
            model.add_seasonality(name=f"period {m}", period=m, fourier_order=min(m // 2, 10))
        days = pd.date_range("2000-01-01", periods=len(y) + H, freq="D")
        model.fit(pd.DataFrame({"ds": days[:len(y)], "y": y}))
        return np.asarray(model.predict(pd.DataFrame({"ds": days[len(y):]}))["yhat"], dtype=float)


@contextlib.contextmanager
def _quiet_prophet():
    """cmdstanpy logs two INFO lines a fit and prophet one ERROR line at import (no plotly): the loggers are
    disabled for the call and restored after. Not by level: cmdstanpy sets its own level at its first fit."""
    loggers = [logging.getLogger(name) for name in ("cmdstanpy", "prophet", "prophet.plot")]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, before):
            lg.disabled = was


METHODS = {"naive": naive, "seasonal naive": seasonal_naive, "theta": theta, "ets (damped)": ets, "prophet": prophet}
DEFAULT = ("naive", "seasonal naive", "theta", "ets (damped)")  # prophet: an extra of its own, and slower
EXTRAS = {"prophet": "prophet"}  # method -> the module it imports, also the lstmkit extra that installs it


def require_methods(methods) -> None:
    """Unknown names and missing optional packages, refused before any training (a missing package inside
    forecast_all would silently become a seasonal-naive fallback on every series)."""
    unknown = [mth for mth in methods if mth not in METHODS]
    if unknown:
        raise ValueError(f"--baselines: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(METHODS)}")
    from ..._optional import require

    for mth in methods:
        if mth in EXTRAS:
            with _quiet_prophet():
                require(EXTRAS[mth], EXTRAS[mth])


def forecast_all(method: str, histories: list, H: int, m: int, progress: bool = False) -> tuple[np.ndarray, int]:
    """(S, H) forecasts for every history with ``method``, and how many fell back to seasonal naive.
    ``progress``: a bar per method on stderr when it is a terminal (statsmodels' fits can take minutes)."""
    import sys

    require_methods([method])
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
            except Exception:  # noqa: BLE001 - any statsmodels/Prophet failure: use the simple method instead
                f, fallbacks = seasonal_naive(np.asarray(y, float), H, m), fallbacks + 1
            out.append(f)
    if bar is not None:
        bar.close()
    return np.asarray(out), fallbacks
