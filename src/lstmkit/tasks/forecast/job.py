"""The forecasting job behind ``lstmkit forecast``: a rolling-origin backtest of the global LSTM (or ES-RNN, with
``model='esrnn'``) against naive, seasonal naive, Theta and ETS on the same origins, and the combination (the
median of the model's, Theta's and ETS's forecasts) as a row of its own, reported side by side (terminal table,
results.json, forecasts.csv, forecasts.png) with the trained model saved as model.safetensors.

Backtest: with ``folds`` K, the origins are n − K·H, n − (K−1)·H, ..., n − H for every series (the last
one is the data set's usual test split). The LSTM is trained once on the data before the first origin and
then forecasts from each origin given the history up to it; the baselines are refitted at every origin.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import baselines as base
from . import data as datasets
from ..distributed import is_main, rank
from .estimator import Forecaster, series_dict
from .metrics import coverage, mase_scale, scores
from ..runio import format_table, pyplot, write_json


def load(dataset: str | None, csv: str | None, horizon: int | None, season_length: int | None, log, freq=None):
    """(SeriesSet, H, m), checked up front: a positive horizon and season length; for a CSV, every series on
    ``freq`` when given (``--freq``), the season from ``freq`` or inferred from datetime ds, with a warning when
    it falls back to 1."""
    for flag, v in (("--horizon", horizon), ("--season-length", season_length)):
        if v is not None and v < 1:
            raise ValueError(f"{flag}: expected a positive integer, got {v}")
    if csv is not None:
        if horizon is None:
            raise ValueError("--horizon is needed with --csv")
        s = datasets.load_long_csv(csv, horizon, season_length, freq)
    else:
        if freq is not None:
            raise ValueError(f"--freq: only with --csv (the bundled {dataset} has its own step), got {freq}")
        s = datasets.load_forecast(dataset)
    H = horizon or s.horizon
    m = season_length or s.season_length
    if season_length is None and csv is not None:
        if m == 1:
            log(f"warning: season length fell back to 1 ({s.note}); pass --season-length to set it")
        else:
            log(f"season length {m} ({s.note})")
    return s, H, m


def check_windows(fc: Forecaster, lengths: dict, held_back: int = 0) -> None:
    """ValueError naming the flags when ``fc`` (the job's Forecaster) cannot fit on series of these lengths: its
    own rule (``Forecaster.min_length`` values per series, one series with a horizon more for a training window),
    checked here because its messages name its arguments (df, horizon). lengths: each series' values the model
    is fit on (after ``held_back``)."""
    H, m = fc.config["horizon"], fc.config["season_length"]
    folds = f" and --folds {held_back // H}" if held_back else ""
    flags = f"--season-length {m} with --horizon {H}{folds}"
    held = f"{held_back} held back for the backtest, then " if held_back else ""
    need, inputs = fc.min_length(), fc.min_length() - H
    longest = max(lengths.values())
    if longest < need + H:
        raise ValueError(f"{flags}: training needs a series of {need + H + held_back} values ({held}{inputs} inputs "
                         f"and {H} targets, for training and again for validation); the longest has "
                         f"{longest + held_back}: lower --season-length or --horizon")
    short = [k for k, n in lengths.items() if n < need]
    if short and not held_back:  # the backtest fits on the long enough ones alone; a future fit needs them all
        raise ValueError(f"{flags}: {len(short)} series have fewer than {need} values ({inputs} inputs and {H} "
                         f"targets), e.g. {short[0]!r} ({lengths[short[0]]}); lower --season-length or --horizon, "
                         "or drop those series")


def run_future(*, out: str, dataset: str | None = None, csv: str | None = None, horizon: int | None = None,
               season_length: int | None = None, limit: int | None = None, resume: bool = False, log=print,
               freq=None, **model_kw) -> dict:
    """Forecast the future: fit on every series' whole history, write the next H steps (forecasts.csv: id, ds,
    step, yhat and the quantiles) and model.safetensors (``lstmkit predict`` and ``Forecaster.load`` read it)."""
    start = time.perf_counter()
    s, H, m = load(dataset, csv, horizon, season_length, log, freq)
    df = s.df
    if limit is not None:
        df = df[df["unique_id"].isin(sorted(df["unique_id"].unique())[:limit])]
    log(f"{s.name}: {df['unique_id'].nunique()} series, horizon {H}, season {m}: fit on all history, forecast the "
        "next steps")
    fc = _forecaster(H, m, {**model_kw, "freq": s.freq})
    check_windows(fc, df.groupby("unique_id").size().to_dict())
    fc.fit(df, ckpt_dir=out, resume=resume, log=log)
    if not is_main():
        return {"task": "forecast", "rank": rank()}
    fc.save(os.path.join(out, "model.safetensors"))
    pred = fc.predict()
    pred.to_csv(os.path.join(out, "forecasts.csv"), index=False)
    summary = {"task": "forecast", "mode": "future", "dataset": s.name, "n_series": int(df["unique_id"].nunique()),
               "horizon": H, "season_length": m, "config": fc.config, "training": fc.history_,
               "forecasts": os.path.join(out, "forecasts.csv"), "checkpoint": os.path.join(out, "model.safetensors"),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "results.json"), summary)
    log(f"wrote {out}/forecasts.csv ({len(pred)} rows: the next {H} steps of each series), results.json, "
        "model.safetensors")
    return summary


MODEL_LABELS = {"lstm": "LSTM (global, quantile)", "esrnn": "ES-RNN (Holt-Winters + LSTM, quantile)"}


def _forecaster(H: int, m: int, model_kw: dict) -> Forecaster:
    """The job's Forecaster: it logs its epochs (the job passes its log), with a bar where ``progress``."""
    kw = dict(model_kw)
    progress = kw.pop("progress", True)
    return Forecaster(H, m, verbose=2 if progress else 1, **kw)


def run(*, out: str, dataset: str | None = None, csv: str | None = None, horizon: int | None = None,
        season_length: int | None = None, folds: int = 1, limit: int | None = None,
        methods=base.DEFAULT, resume: bool = False, log=print, freq=None, **model_kw) -> dict:
    """The rolling-origin backtest (module docstring): results.json, forecasts.csv/png, model.safetensors."""
    start = time.perf_counter()
    if not isinstance(folds, int) or folds < 1:
        raise ValueError(f"--folds: expected an integer >= 1 (rolling origins to score), got {folds}; to forecast "
                         "the future from all history use --future")
    base.require_methods(methods)
    s, H, m = load(dataset, csv, horizon, season_length, log, freq)
    ys = series_dict(s.df, s.freq, s.name)
    if limit is not None:
        ys = dict(list(ys.items())[:limit])
    short = [k for k, y in ys.items() if len(y) <= folds * H + 2]
    if short:
        log(f"skipping {len(short)} series with ≤ {folds * H + 2} values (too short for {folds} fold(s) of {H})")
        ys = {k: y for k, y in ys.items() if k not in short}
    if not ys:
        raise ValueError("no series long enough to backtest")
    log(f"{s.name}: {len(ys)} series, horizon {H}, season {m}, {folds} rolling origin(s)")
    import pandas as pd

    cut = folds * H
    fc = _forecaster(H, m, model_kw)
    need = cut + fc.min_length()  # the held-back folds, then what fit needs of a series (its validation window)
    fit_on = {k: y for k, y in ys.items() if len(y) >= need}
    check_windows(fc, {k: len(y) - cut for k, y in ys.items()}, cut)
    if len(fit_on) < len(ys):
        log(f"{len(ys) - len(fit_on)} series with < {need} values are forecast in the backtest but too short to "
            "train on")
    train_df = pd.concat([pd.DataFrame({"unique_id": k, "ds": np.arange(len(y) - cut), "y": y[:len(y) - cut]})
                          for k, y in fit_on.items()], ignore_index=True)
    t0 = time.perf_counter()
    fc.fit(train_df, ckpt_dir=out, resume=resume, log=log)
    fit_seconds = time.perf_counter() - t0
    if not is_main():  # under torchrun only rank 0 backtests and writes the report
        return {"task": "forecast", "rank": rank()}
    fc.save(os.path.join(out, "model.safetensors"))

    actual, scales, histories, preds = [], [], [], {"model": []}
    for k in range(folds):
        o = cut - k * H  # values held back at this origin
        hist = {u: y[:len(y) - o] for u, y in ys.items()}
        histories += list(hist.values())
        actual.append(np.stack([y[len(y) - o:len(y) - o + H] for y in ys.values()]))
        scales += [mase_scale(h, m) for h in hist.values()]
        preds["model"].append(fc.predict_arrays(hist))
    actual, scales = np.concatenate(actual), np.asarray(scales)
    q = fc.config["quantiles"]
    lstm_q = np.concatenate(preds["model"])  # (S·K, H, Q)
    label = MODEL_LABELS[fc.config["model"]]
    point = {label: lstm_q[:, :, q.index(0.5)]}
    seconds = {label: fit_seconds}
    fallbacks = {}
    for name in methods:
        t0 = time.perf_counter()
        point[name], fallbacks[name] = base.forecast_all(name, histories, H, m, progress=model_kw.get("progress"))
        seconds[name] = time.perf_counter() - t0
    baseline_names = list(methods)
    _combine(point, seconds, label, log)
    rows = [{"method": name, **scores(actual, f, scales), "seconds": seconds[name]} for name, f in point.items()]
    lo, hi = lstm_q[:, :, 0], lstm_q[:, :, -1]
    cov = coverage(actual, lo, hi)
    log(format_table(rows, ["method", "MASE", "sMAPE", "MAE", "RMSE", "seconds"]))
    log(f"{label} {q[0]:g}-{q[-1]:g} quantile interval covers {cov:.1%} of actual values "
        f"(nominal {q[-1] - q[0]:.0%})")
    verdicts = _verdicts(rows, baseline_names, log)
    for name, n in fallbacks.items():
        if n:
            log(f"note: {name} failed on {n} series-origins and used seasonal naive there")
    _write_forecasts(out, list(ys), folds, actual, point, lo, hi)
    _plot(os.path.join(out, "forecasts.png"), list(ys.values()), folds, H, point, lo, hi, s.name)
    summary = {"task": "forecast", "dataset": s.name, "n_series": len(ys), "horizon": H, "season_length": m,
               "folds": folds, "config": fc.config, "training": fc.history_, "table": rows,
               "interval": {"quantiles": [q[0], q[-1]], "coverage": cov}, "verdicts": verdicts,
               "baseline_fallbacks": fallbacks, "checkpoint": os.path.join(out, "model.safetensors"),
               "seconds": round(time.perf_counter() - start, 1)}
    write_json(os.path.join(out, "results.json"), summary)
    log(f"wrote {out}/results.json, forecasts.csv, forecasts.png, model.safetensors "
        f"({summary['seconds']:.0f}s in all)")
    return summary


def _verdicts(rows: list, baseline_names: list, log) -> dict:
    """One line per baseline: does the model's MASE (the first row) beat it? And the combination's, if any."""
    by_name = {r["method"]: r["MASE"] for r in rows}
    out = {}
    for r in rows[:1] + [r for r in rows if r["method"].startswith("combination")]:
        for name in baseline_names:
            better = r["MASE"] < by_name[name]
            key = name if r is rows[0] else f"{r['method']} vs {name}"
            out[key] = "better" if better else "worse"
            log(f"{r['method']} MASE {r['MASE']:.3f} vs {name} {by_name[name]:.3f}: "
                f"{'better' if better else 'WORSE'}")
    return out


COMBINED = ("theta", "ets (damped)")  # the statistical forecasts the model is combined with


def _combine(point: dict, seconds: dict, label: str, log) -> None:
    """Add the combination row: the median, point by point, of the model's forecast, Theta and ETS (Smyl's
    and the M4 lesson: a combination of different methods beats each of them); skipped when a baseline is
    not run. Its seconds are the three methods' together."""
    if not all(name in point for name in COMBINED):
        log(f"no combination row: it needs the baselines {', '.join(COMBINED)}")
        return
    names = [label, *COMBINED]
    key = f"combination: median of {label.split(' (')[0]}, Theta, ETS"
    point[key] = np.median(np.stack([point[n] for n in names]), axis=0)
    seconds[key] = sum(seconds[n] for n in names)


def _write_forecasts(out, ids, folds, actual, point, lo, hi) -> None:
    import pandas as pd

    S, H = len(ids), actual.shape[1]
    frame = {"unique_id": np.repeat(np.tile(ids, folds), H), "fold": np.repeat(np.arange(folds), S * H),
             "step": np.tile(np.arange(1, H + 1), S * folds), "actual": actual.ravel()}
    for name, f in point.items():
        frame[name] = f.ravel()
    frame["lstm_lo"], frame["lstm_hi"] = lo.ravel(), hi.ravel()
    pd.DataFrame(frame).to_csv(os.path.join(out, "forecasts.csv"), index=False)


def _plot(path, series, folds, H, point, lo, hi, title, n_panels: int = 4) -> None:
    """The last origin's forecasts for up to ``n_panels`` series, with the LSTM's interval."""
    plt = pyplot()
    S = len(series)
    picks = np.linspace(0, S - 1, min(n_panels, S)).astype(int)
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.4 * len(picks)), squeeze=False)
    last = (folds - 1) * S
    for ax, i in zip(axes[:, 0], picks):
        y = series[i]
        n = len(y)
        show = max(0, n - 4 * H)
        ax.plot(np.arange(show, n), y[show:], color="black", lw=1, label="actual")
        t = np.arange(n - H, n)
        ax.fill_between(t, lo[last + i], hi[last + i], color="tab:blue", alpha=0.2, label="LSTM interval")
        for name, f in point.items():
            ax.plot(t, f[last + i], lw=1.2, label=name)
        ax.set_title(f"{title}: series {i}", fontsize=9)
        ax.set_ylabel("value", fontsize=8)
    axes[-1, 0].set_xlabel("time step (index within the series)", fontsize=8)
    axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
