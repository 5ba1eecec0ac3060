"""Long-format forecasting data (one row per series and time) checked and split into per-series arrays.

Column names follow neuralforecast: ``id_col`` (default unique_id), ``time_col`` (ds), ``target_col`` (y);
covariates ``futr_exog_list`` (known in the future too), ``hist_exog_list`` (known up to the forecast origin)
and ``stat_exog_list`` (one value per series, in a separate ``static_df``). Everything is checked up front and
refused by name: a column the model would not read, NaN, a repeated or missing time step, too short a series.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Columns:
    """The names the data is read by."""

    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"
    futr_exog: list = field(default_factory=list)
    hist_exog: list = field(default_factory=list)
    stat_exog: list = field(default_factory=list)

    @property
    def exog(self) -> list:
        """The per-time covariates in the order the model reads them: future-known first, then history-only."""
        return list(self.futr_exog) + list(self.hist_exog)


@dataclass
class Series:
    """One series: y (n,), exog (n, K) in ``Columns.exog`` order, static (S,), and its time axis: the last
    time ``last`` and the step (a pandas offset alias for datetimes, an integer otherwise)."""

    uid: object
    y: np.ndarray
    exog: np.ndarray
    static: np.ndarray
    last: object
    step: object
    times: object = None  # (n,) the series' times (None for a history restored from a checkpoint)

    def head(self, n: int) -> Series:
        """The first n values (a history up to a cutoff), its last time the n-th."""
        return Series(self.uid, self.y[:n], self.exog[:n], self.static, self.times[n - 1], self.step, self.times[:n])


def name(uid) -> str:
    """A series id as the user wrote it (202, not np.int64(202); 'a' quoted)."""
    return repr(uid.item() if isinstance(uid, np.generic) else uid)


def _pd():
    from ..._optional import require

    return require("pandas", "tasks")


def require_frame(df, where: str, columns: list) -> None:
    """``df`` a pandas DataFrame (a dict, an array or another library's frame failed later with an AttributeError
    or was misread): refused naming ``where``, the columns it needs and what came."""
    if not isinstance(df, _pd().DataFrame):
        kind = type(df)
        came = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(f"{where}: expected a pandas DataFrame with columns {', '.join(map(str, columns))}, got "
                        f"{came}{'; pd.DataFrame(...) builds one from a dict' if isinstance(df, dict) else ''}")


def check_columns(df, cols: Columns, where: str, future: bool = False) -> None:
    """Required columns present; any other column refused by name (never silently ignored).
    ``future``: a futr_df (id, time and the future-known covariates only)."""
    need = [cols.id_col, cols.time_col] + (list(cols.futr_exog) if future else [cols.target_col] + cols.exog)
    require_frame(df, where, need)
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(map(repr, missing))} (columns: "
                         f"{', '.join(map(str, df.columns))})")
    extra = [str(c) for c in df.columns if c not in need]
    if extra:
        hint = ("only futr_exog_list columns belong in futr_df" if future else
                "list each in futr_exog_list (known in the future) or hist_exog_list (known up to the forecast "
                "origin), give static ones in static_df with stat_exog_list, or drop them")
        raise ValueError(f"{where}: column(s) {', '.join(map(repr, extra))} would be ignored; {hint}")
    stat_here = [c for c in cols.stat_exog if c in df.columns]
    if stat_here:
        raise ValueError(f"{where}: static column(s) {', '.join(stat_here)} belong in static_df")


def _check_keys(df, cols: Columns, where: str) -> None:
    """No missing id or time: pandas' groupby would drop a row whose id is NaN/None without a word, and a NaT
    would read as a gap in its series."""
    for c in (cols.id_col, cols.time_col):
        bad = df[c].isna().to_numpy()
        if bad.any():
            at = int(np.argmax(bad))
            raise ValueError(f"{where}: column {c!r} is missing (NaN/None/NaT) in {int(bad.sum())} row(s), the first "
                             f"at row {at} (position in the frame); every row needs its series id and its time")


def _check_values(df, cols: Columns, names: list, where: str) -> None:
    """Numeric, finite values in ``names``; the first bad row named by series and time."""
    pd = _pd()
    _check_keys(df, cols, where)
    for c in names:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise ValueError(f"{where}: column {c!r} is not numeric ({df[c].dtype})")
        bad = ~np.isfinite(df[c].to_numpy(np.float64))
        if bad.any():
            k = int(np.argmax(bad))  # by column, not df[bad].iloc[0]: a row of mixed types would read 1 as 1.0
            uid, t = df[cols.id_col].iloc[k], df[cols.time_col].iloc[k]
            raise ValueError(f"{where}: series {name(uid)} has a missing or non-finite {c} at "
                             f"{cols.time_col}={_plain_time(t)} ({int(bad.sum())} such rows in all); fill or "
                             "drop them first")


def check_freq(freq):
    """``freq`` as the Forecaster reads it: None (infer each series' step), a positive integer (the step of
    integer times) or a pandas offset (from an alias such as 'MS', 'ME', 'QE-DEC', 'W-SUN', '2D', or a
    ``pd.DateOffset`` such as ``pd.DateOffset(months=1)``, monthly on any day)."""
    if freq is None:
        return None
    if isinstance(freq, (int, np.integer)) and not isinstance(freq, (bool, np.bool_)):
        if freq < 1:
            raise ValueError(f"freq: expected a positive integer step (integer times) or a pandas offset alias, got "
                             f"{freq!r}")
        return int(freq)
    pd = _pd()
    if not isinstance(freq, (str, pd.DateOffset)):
        raise TypeError(f"freq: expected a pandas offset alias such as 'MS', 'ME', 'QE-DEC' or 'D', a pandas "
                        f"DateOffset, or a positive integer step for integer times, got {type(freq).__name__} "
                        f"{freq!r}")
    try:
        return pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise ValueError(f"freq: expected a pandas offset alias such as 'MS', 'ME', 'QE-DEC' or 'D', got {freq!r}, "
                         "which pandas does not know") from None


def freq_json(step):
    """A series' step as JSON: an integer, an alias string, or {'DateOffset': kwds, 'n': n} for an offset with no
    alias (``pd.DateOffset(months=1)``); ``freq_from_json`` reads it back."""
    pd = _pd()
    if not isinstance(step, pd.DateOffset):
        return step.item() if isinstance(step, np.generic) else step
    try:
        if pd.tseries.frequencies.to_offset(step.freqstr) == step:
            return step.freqstr
    except ValueError:
        pass
    return {"DateOffset": dict(step.kwds), "n": int(step.n)}


def freq_from_json(step):
    """The step ``freq_json`` wrote: an integer or alias as they are, a DateOffset rebuilt."""
    if isinstance(step, dict):
        return _pd().DateOffset(step["n"], **step["DateOffset"])
    return step


def _freq_text(freq) -> str:
    """A step as the user would write it: its alias quoted, or the DateOffset's repr."""
    as_json = freq_json(freq)
    return repr(freq) if isinstance(as_json, dict) else repr(as_json)


def time_step(times, uid, cols: Columns, where: str, freq=None):
    """The series' regular step: ``freq`` when given (``check_freq``'s; every time checked against it), else
    inferred: a pandas frequency alias for datetimes, an integer for integer times.
    A gap, an irregular, a repeated time or one off ``freq`` is refused naming the series."""
    pd = _pd()
    t = times
    if isinstance(t, pd.DatetimeIndex) and t.has_duplicates:
        raise ValueError(f"{where}: series {name(uid)} has {cols.time_col} {t[t.duplicated()][0]} more than once")
    if freq is not None:
        return _check_on_freq(t, uid, cols, where, freq)
    if len(t) < 2:
        return None
    if isinstance(t, pd.DatetimeIndex):
        freq = pd.infer_freq(t) if len(t) >= 3 else None
        if freq is None:
            diffs = np.diff(t.asi8)
            k = int(np.argmax(diffs != diffs[0])) if len(diffs) > 1 and np.any(diffs != diffs[0]) else None
            at = f" after {t[k]}" if k is not None else ""
            few = "; two times are too few to infer a calendar" if len(t) == 2 else ""
            raise ValueError(f"{where}: series {name(uid)} is not on a regular calendar ({len(t)} times; a gap or "
                             f"irregular step{at}{few}); fill the missing times first, or give the Forecaster "
                             "freq= (e.g. 'MS', 'ME', or pd.DateOffset(months=1) for the same day of each month; "
                             "lstmkit forecast: --freq MS, --freq months=1)")
        return freq
    return _integer_step(t, uid, cols, where)


def _integer_step(t, uid, cols: Columns, where: str, freq: int | None = None) -> int:
    """The step of integer times (``freq`` when given, else the first difference); any other step refused."""
    v = np.asarray(t)
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{where}: {cols.time_col} must be datetimes or integers, got {v.dtype}")
    d = np.diff(v)
    if np.any(d <= 0):
        k = int(np.argmax(d <= 0))
        raise ValueError(f"{where}: series {name(uid)} has {cols.time_col} {v[k + 1]} repeated or out of order")
    step = freq if freq is not None else (int(d[0]) if len(d) else None)
    if np.any(d != step):
        k = int(np.argmax(d != step))
        given = f"freq={freq}" if freq is not None else "the series' first step"
        raise ValueError(f"{where}: series {name(uid)} has a gap after {cols.time_col}={v[k]} (step {d[k]}, "
                         f"{given} is {step}); fill the missing times first")
    return step


def _check_on_freq(t, uid, cols: Columns, where: str, freq):
    """``freq`` after checking every time of the series is on it, each one step after the one before."""
    pd = _pd()
    dated = isinstance(t, pd.DatetimeIndex)
    if isinstance(freq, int):
        if dated:
            raise ValueError(f"freq: an integer step is for integer {cols.time_col}; {where}'s {cols.time_col} holds "
                             f"datetimes, got freq={freq}; give a pandas offset alias such as 'MS' or 'D'")
        return _integer_step(t, uid, cols, where, freq)
    if not dated:
        raise ValueError(f"freq: a pandas offset is for datetime {cols.time_col}; {where}'s {cols.time_col} holds "
                         f"{np.asarray(t).dtype}, got freq={_freq_text(freq)}; give an integer step or leave it out")
    if len(t) and not freq.is_on_offset(t[0]):
        raise ValueError(f"{where}: series {name(uid)} has {cols.time_col} {t[0]}, not on freq={_freq_text(freq)} "
                         f"(the nearest such date after it is {freq.rollforward(t[0])}); give the freq the data is on")
    with _quiet_offsets():
        off = np.flatnonzero(t[1:] != t[:-1] + freq) if len(t) > 1 else []
    if len(off):
        k = int(off[0])
        raise ValueError(f"{where}: series {name(uid)} has {cols.time_col} {t[k + 1]} after {t[k]}, where "
                         f"freq={_freq_text(freq)} puts {t[k] + freq} (a gap, or data off the given freq); fill "
                         "the missing times or give the freq the data is on")
    return freq


def steps_between(start, end, step) -> int | None:
    """How many steps of ``step`` (an integer, a pandas alias or offset) lead from time ``start`` to time ``end``:
    negative when ``end`` is earlier, None when the later one is not on the earlier one's grid (or the two are not
    the same kind of time). Calendar steps are counted one by one, as ``_check_on_freq`` and ``future_times`` step
    (a month is not a fixed length)."""
    pd = _pd()
    dated = isinstance(start, pd.Timestamp)
    if dated != isinstance(end, pd.Timestamp) or (dated and (start.tz is None) != (end.tz is None)):
        return None
    if end == start:
        return 0
    if not dated:
        k, r = divmod(int(end) - int(start), int(step))
        return k if r == 0 else None
    if start.tz is not None:  # a saved time keeps only its UTC offset; step in the data's zone (clock changes)
        start = start.tz_convert(end.tz)
    lo, hi = sorted((start, end))
    off = pd.tseries.frequencies.to_offset(step)
    if isinstance(off, pd.offsets.Tick):  # a fixed length: counted by division, however long the span
        k, r = divmod(hi - lo, pd.Timedelta(off))
        if r:
            return None
    else:
        with _quiet_offsets():
            grid = pd.date_range(lo, hi, freq=off)  # rolls lo forward when lo is off an anchored offset
        if not len(grid) or grid[0] != lo or grid[-1] != hi:
            return None
        k = len(grid) - 1
    return int(k) if end > start else -int(k)


@contextmanager
def _quiet_offsets():
    """Adding an offset without a vectorised implementation to many times warns that it runs per element (it is
    right, only slower): silenced here, where that is expected."""
    pd = _pd()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        yield


def _times(g, cols: Columns):
    pd = _pd()
    t = g[cols.time_col]
    return pd.DatetimeIndex(t) if pd.api.types.is_datetime64_any_dtype(t) else t.to_numpy()


def statics(static_df, cols: Columns, uids: list, where: str = "static_df") -> dict:
    """{uid: (S,) float64} from static_df (id_col + stat_exog_list), one row per series, every series present."""
    if static_df is not None:
        require_frame(static_df, where, [cols.id_col] + list(cols.stat_exog))
    if not cols.stat_exog:
        if static_df is not None:
            raise ValueError(f"{where}: given, but stat_exog_list is empty; name its columns there")
        return {u: np.zeros(0) for u in uids}
    if static_df is None:
        raise ValueError(f"static_df: needed for stat_exog_list {cols.stat_exog}")
    need = [cols.id_col] + list(cols.stat_exog)
    missing = [c for c in need if c not in static_df.columns]
    extra = [str(c) for c in static_df.columns if c not in need]
    if missing or extra:
        raise ValueError(f"{where}: expected columns {need}; missing {missing}, not used {extra}")
    values = static_df[list(cols.stat_exog)]
    for c in cols.stat_exog:
        if not _pd().api.types.is_numeric_dtype(values[c]) or not np.all(np.isfinite(values[c].to_numpy(float))):
            raise ValueError(f"{where}: column {c!r} must hold finite numbers")
    if static_df[cols.id_col].duplicated().any():
        raise ValueError(f"{where}: series {name(static_df[cols.id_col][static_df[cols.id_col].duplicated()].iloc[0])} "
                         "has more than one row")
    table = {u: r for u, r in zip(static_df[cols.id_col], static_df[list(cols.stat_exog)].to_numpy(np.float64))}
    absent = [u for u in uids if u not in table]
    if absent:
        raise ValueError(f"{where}: no row for series {', '.join(map(name, absent[:5]))}"
                         f"{' ...' if len(absent) > 5 else ''}")
    return {u: table[u] for u in uids}


def split_series(df, cols: Columns, static_df=None, where: str = "df", freq=None) -> dict:
    """Checked long-format frame -> {uid: Series} in sorted id order (ids keep their values and dtype).
    ``freq``: ``check_freq``'s step every series must be on (None: each series' own, inferred)."""
    check_columns(df, cols, where)
    _check_values(df, cols, [cols.target_col] + cols.exog, where)
    out = {}
    for uid, g in df.groupby(cols.id_col, sort=True):  # ids in sorted order, as neuralforecast
        g = g.sort_values(cols.time_col)
        times = _times(g, cols)
        step = time_step(times, uid, cols, where, freq)
        out[uid] = Series(uid, g[cols.target_col].to_numpy(np.float64),
                          g[cols.exog].to_numpy(np.float64).reshape(len(g), len(cols.exog)), np.zeros(0),
                          times[-1], step, times)
    if not out:
        raise ValueError(f"{where}: no rows")
    _check_distinct_texts(list(out), cols, where)
    for uid, s in zip(out, statics(static_df, cols, list(out)).values()):
        out[uid].static = s
    return out


def _check_distinct_texts(uids: list, cols: Columns, where: str) -> None:
    """Refuse two ids that print the same (1 and "1"): a saved model keys its series by their text (JSON),
    so they would share one series' calendar and parameters."""
    seen = {}
    for uid in uids:
        other = seen.setdefault(str(uid), uid)
        if other is not uid:
            raise ValueError(f"{where}: {cols.id_col} holds {other!r} ({type(other).__name__}) and {uid!r} "
                             f"({type(uid).__name__}), which a saved model cannot tell apart (it keys series by "
                             "their text); give the ids one type")


def future_times(s: Series, H: int) -> list:
    """The H times after the series' last: calendar steps for datetimes, integer steps otherwise."""
    pd = _pd()
    if isinstance(s.last, (pd.Timestamp, np.datetime64)):
        if s.step is None:
            raise ValueError(f"series {name(s.uid)}: one datetime is not enough to tell the step of the next ones")
        return list(pd.date_range(pd.Timestamp(s.last), periods=H + 1, freq=s.step)[1:])
    if s.step is None:  # one integer time says no more about the step than one datetime does
        raise ValueError(f"series {name(s.uid)}: one time is not enough to tell the step of the next ones; give at "
                         "least two")
    return [s.last + s.step * (k + 1) for k in range(H)]


def future_exog(futr_df, cols: Columns, series: dict, H: int) -> dict:
    """{uid: (H, F) float64}: the futr_exog_list values at each series' next H times, from futr_df."""
    if not cols.futr_exog:
        if futr_df is not None:
            raise ValueError("futr_df: given, but futr_exog_list is empty")
        return {u: np.zeros((H, 0)) for u in series}
    if futr_df is None:
        raise ValueError(f"futr_df: needed for futr_exog_list {cols.futr_exog} (their values at the next {H} "
                         "times of every series)")
    check_columns(futr_df, cols, "futr_df", future=True)
    _check_values(futr_df, cols, list(cols.futr_exog), "futr_df")
    pd = _pd()
    out = {}
    groups = dict(tuple(futr_df.groupby(cols.id_col, sort=False)))
    for uid, s in series.items():
        want = future_times(s, H)
        g = groups.get(uid)
        if g is None:
            raise ValueError(f"futr_df: no rows for series {name(uid)} (needs {cols.time_col} {want[0]} .. {want[-1]})")
        if g[cols.time_col].duplicated().any():
            t = g[cols.time_col][g[cols.time_col].duplicated()].iloc[0]
            raise ValueError(f"futr_df: series {name(uid)} has {cols.time_col} {t} more than once")
        g = g.set_index(cols.time_col)
        key = pd.DatetimeIndex(want) if isinstance(want[0], pd.Timestamp) else want
        missing = [t for t in key if t not in g.index]
        if missing:
            raise ValueError(f"futr_df: series {name(uid)} lacks {cols.time_col} {missing[0]} ({len(missing)} of the "
                             f"{H} future times missing)")
        out[uid] = g.loc[key, list(cols.futr_exog)].to_numpy(np.float64).reshape(H, len(cols.futr_exog))
    return out


def output_frame(uids: list, times: list, cols: Columns, id_dtype, time_dtype, columns: dict):
    """Forecast rows: id_col (its input dtype), time_col (datetimes stay datetimes), then ``columns``."""
    pd = _pd()
    frame = {cols.id_col: pd.Series(uids).astype(id_dtype), cols.time_col: pd.Series(times)}
    if time_dtype is not None and not pd.api.types.is_datetime64_any_dtype(time_dtype):
        frame[cols.time_col] = frame[cols.time_col].astype(time_dtype)
    elif time_dtype is not None:
        frame[cols.time_col] = pd.to_datetime(frame[cols.time_col]).astype(time_dtype)
    frame.update({k: np.asarray(v) for k, v in columns.items()})
    return pd.DataFrame(frame)


def _plain_time(t):
    """A time as a user wrote it: an integer without numpy's type, a Timestamp as it prints."""
    return t.item() if isinstance(t, np.generic) else t
