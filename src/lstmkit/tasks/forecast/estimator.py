"""Global LSTM forecasting: ``Forecaster`` over long-format data, with neuralforecast's names.

    fc = Forecaster(horizon=8, season_length=4).fit(df)          # df: unique_id, ds, y
    fc.predict()            # DataFrame: unique_id, ds, step, yhat, q0.1, q0.5, q0.9 (the next 8 steps)
    fc.predict(history_df)  # forecasts from the end of other (or truncated) histories, phases by their times
    fc.cross_validation(df, n_windows=3)   # forecasts beside y from 3 cutoffs
    Forecaster(horizon=8, id_col="store", time_col="date", target_col="sales", futr_exog_list=["promo"],
               hist_exog_list=["visits"], stat_exog_list=["size"]).fit(df, static_df=stores)
    fc.predict(futr_df=next_promos)   # futr_df: the future-known covariates at the next 8 times
    Forecaster(horizon=8, season_length=4, model="esrnn", ensemble=3).fit(df)   # ES-RNN (esrnn.py)

One model (or a median ensemble of ``ensemble`` models with different seeds and input lengths) is trained
on windows from all series at once, with the pinball (quantile) loss on level-normalised values
(see ``lstmkit.tasks.windows``); covariates are standardised with their training mean and std. The last
``horizon`` values of every series are the validation targets for early stopping; training windows end
before them. Data is checked up front (``lstmkit.tasks.panel``): a column the model would not read, NaN, a
gap in time or a series too short for one window is refused with the series named.
"""
from __future__ import annotations

import os

import numpy as np

from ...params import check_size
from .. import checkpoint, devices
from . import panel, windows
from ..training import TrainConfig, fit, keeps_global_rng, quiet, resumable, seed_everything

TASK = "forecast"


def series_dict(df, freq=None, where: str = "df") -> dict:
    """Long-format frame (unique_id, ds, y) -> {unique_id: y (n,) float64}, in ds order, checked (every series
    on ``freq`` when given, as ``Forecaster(freq=...)``; ``where``: the frame's name in messages)."""
    return {uid: s.y for uid, s in panel.split_series(df, panel.Columns(), where=where, freq=freq).items()}


def _check_quantiles(quantiles) -> tuple:
    """Strictly increasing values in (0, 1) that include 0.5 (the point forecast): the forecast's columns are
    named after them in order, and predictions are sorted along them (quantiles never cross)."""
    try:
        q = tuple(float(v) for v in quantiles)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles: expected a sequence of numbers in (0, 1), got {quantiles!r}") from None
    if not q or any(not 0.0 < v < 1.0 for v in q) or any(a >= b for a, b in zip(q, q[1:])):
        raise ValueError(f"quantiles: expected strictly increasing numbers in (0, 1), got {quantiles!r}")
    if 0.5 not in q:
        raise ValueError(f"quantiles: must include 0.5 (the point forecast), got {quantiles!r}")
    return q


def _check_sizes(**sizes) -> None:
    """Every count a positive integer (patience and seed: >= 0; input_length and patch: None for the default)."""
    at_least = {"patience": 0, "seed": 0}
    for name, value in sizes.items():
        if value is None and name in ("input_length", "patch"):
            continue
        check_size(name, value, at_least.get(name, 1))


def pinball(pred, target, quantiles):
    """Mean quantile (pinball) loss: pred (B, H, Q), target (B, H), quantiles (Q,) tensor -> scalar."""
    import torch

    err = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * err, (quantiles - 1) * err).mean()


def _standardiser(values: np.ndarray) -> list:
    """[[mean, std], ...] per column of values (n, K); std 1 where a column is constant."""
    if values.size == 0:
        return [[0.0, 1.0]] * values.shape[1]
    mean, std = values.mean(0), values.std(0)
    return [[float(m), float(s) if s > 1e-12 else 1.0] for m, s in zip(mean, std)]


MODELS = ("lstm", "esrnn")
# batch_size and lr when not given: the LSTM's batches are windows, ES-RNN's whole series (chosen on the
# validation window before the Tourism quarterly holdout, MASE: lr 1e-3 1.713, 3e-3 1.719, 3e-4 1.772; 32 series
# a batch (hidden 64) 1.713, 64 series (hidden 32) 1.738)
# refit (esrnn): on the window before the holdout, MASE M1 yearly 3.114 -> 2.893, M1 quarterly 1.661 -> 1.677, Tourism
# quarterly 1.713 -> 1.714 (short series gain most: their last H values are a large part of what they have)
MODEL_DEFAULTS = {"lstm": {"batch_size": 512, "lr": 3e-3, "refit": False, "loss_weights": "none"},
                  "esrnn": {"batch_size": 32, "lr": 1e-3, "refit": True, "loss_weights": "none"}}
# ES-RNN's seasonality: 'all' (every series learns seasonal indices) or 'tested' (only those passing the M4
# benchmarks' 90% autocorrelation test at lag m, baselines.seasonality_test; the others a flat season)
SEASONALITY = ("all", "tested")
# ES-RNN's trend: 'none' (the LSTM carries any trend) or 'damped' (a damped trend in the log level, esrnn.py)
TRENDS = ("none", "damped")
# ES-RNN's loss weights: 'none' (every origin alike: relative errors) or 'mase' (origin t of series i weighs
# level_t / MASE scale_i, so the loss approximates MASE, the score the anchors are compared on)
LOSS_WEIGHTS = ("none", "mase")
DILATIONS_EXAMPLE = "((1, 3), (6, 12))"  # Smyl's monthly stack: two blocks of two layers


def check_dilations(dilations) -> list | None:
    """ES-RNN's dilated stack, checked: None (one plain recurrent layer) or blocks of dilations, each a non-empty
    sequence of positive integers, e.g. ((1, 3), (6, 12)) -> [[1, 3], [6, 12]] (lists: the config is JSON)."""
    if dilations is None:
        return None
    want = f"dilations: expected blocks of positive integers such as {DILATIONS_EXAMPLE}"

    def integer(d) -> bool:
        return isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 1

    if isinstance(dilations, (str, bytes)) or not hasattr(dilations, "__iter__"):
        raise ValueError(f"{want}, got {dilations!r}")
    blocks = list(dilations)
    if not blocks:
        raise ValueError(f"{want}, got no blocks: {dilations!r}")
    for k, block in enumerate(blocks):
        if isinstance(block, (str, bytes)) or not hasattr(block, "__iter__"):
            hint = f" (one block of these layers is written ({tuple(blocks)!r},))" if all(map(integer, blocks)) else ""
            raise ValueError(f"{want}, got {dilations!r}: block {k} is {block!r}, not a sequence{hint}")
        if not len(block) or not all(integer(d) for d in block):
            raise ValueError(f"{want}, got {dilations!r}: block {k} is {tuple(block)!r}")
    return [[int(d) for d in block] for block in blocks]


HEAD = 8  # first values of each training series an ES-RNN keeps, to recognise its histories later


def _require_esrnn_args(patch, futr, hist, stat, level_penalty, loss_weights, seasonality="all",
                        snapshots=1, trend="none", dilations=None, num_layers=1) -> None:
    """What model='esrnn' does not read, refused by name (it would otherwise be silently ignored)."""
    for name, lst in (("futr_exog_list", futr), ("hist_exog_list", hist), ("stat_exog_list", stat)):
        if len(lst):
            raise ValueError(f"{name}: model='esrnn' reads no covariates, got {list(lst)}; use model='lstm'")
    if patch not in (None, 1):
        raise ValueError(f"patch: model='esrnn' reads one window per time step (patch 1), got {patch}")
    if not np.isfinite(level_penalty) or level_penalty < 0:
        raise ValueError(f"level_penalty: expected a finite number >= 0, got {level_penalty!r}")
    if loss_weights not in LOSS_WEIGHTS:
        raise ValueError(f"loss_weights: expected one of {', '.join(map(repr, LOSS_WEIGHTS))}, got {loss_weights!r}")
    if seasonality not in SEASONALITY:
        raise ValueError(f"seasonality: expected one of {', '.join(map(repr, SEASONALITY))}, got {seasonality!r}")
    if trend not in TRENDS:
        raise ValueError(f"trend: expected one of {', '.join(map(repr, TRENDS))}, got {trend!r}")
    if isinstance(snapshots, (bool, np.bool_)) or not isinstance(snapshots, (int, np.integer)) or snapshots < 1:
        raise ValueError(f"snapshots: expected an integer >= 1 (epochs whose forecasts a member averages), got "
                         f"{snapshots!r}")
    if check_dilations(dilations) is not None and num_layers != 1:
        raise ValueError(f"num_layers: with dilations each dilation is a layer; leave num_layers at 1, got "
                         f"{num_layers!r} with dilations={dilations!r}")


class Forecaster:
    """Global LSTM forecaster with quantile outputs.

    horizon H, season_length m (1 = none), input_length L (default max(2H, 3m), a multiple of patch),
    patch P values per LSTM step, quantiles (must include 0.5: the point forecast).
    Columns (neuralforecast's names): id_col, time_col, target_col; futr_exog_list (covariates known in the
    future: their next H values come in predict's futr_df), hist_exog_list (known up to the origin),
    stat_exog_list (one value per series, in fit's static_df). Any other column in df is an error.
    verbose: 0 silent (default), 1 one line per epoch on stdout, 2 also a progress bar (on a terminal).
    model: 'lstm' (the LSTM above) or 'esrnn' (Smyl's ES-RNN, ``lstmkit.tasks.forecast.esrnn``: per-series
    Holt-Winters smoothing and seasonal indices learned with a global LSTM; no covariates, patch 1;
    ``level_penalty`` weighs its level wiggliness penalty; ``loss_weights`` 'mase' weighs each series' origins by
    level / MASE scale, 'none' alike; ``seasonality`` 'tested' gives seasonal indices only to the series that pass
    the 90% autocorrelation test at lag m, 'all' (default) to every series; ``snapshots`` k > 1: each member's
    forecast is the mean of those of its last k epochs, a snapshot ensemble; ``trend`` 'damped' adds a damped
    trend to the smoothed log level, 'none' (default) leaves trends to the LSTM; ``dilations``, blocks of
    dilations such as ((1, 3), (6, 12)), replaces the LSTM layer by Smyl's dilated stack, esrnn.DilatedStack: one
    layer of hidden_size per dilation d, whose step reads the state d origins back, residual connections between
    blocks; None (default) keeps the one layer). batch_size, lr, refit and
    loss_weights default per model (MODEL_DEFAULTS).
    ensemble: members with seeds seed, seed+1, ... and input lengths L, L+2P, L−P, ... (either model); the
    forecast is their median.
    device: where the model trains and predicts ('cpu', 'cuda', 'cuda:N', 'mps' or a torch.device; checked
    here, so a missing GPU fails before any work).
    freq: the step between times, as neuralforecast's ``NeuralForecast(freq=...)``: a pandas offset alias ('MS',
    'ME', 'QE-DEC', 'W-SUN', 'D', '2h', ...) or a ``pd.DateOffset`` (``pd.DateOffset(months=1)``: monthly on the
    day the series are dated) for datetime times, a positive integer for integer times. Given, every series in
    fit's, predict's and cross_validation's data must be on it (its first time on the offset, each time one step
    after the one before; data off it is refused naming the series), and predict's times follow it (month-end
    stays month-end); a series of one or two times is enough. None (default): each series' step is inferred
    (pandas' ``infer_freq``, at least three times; the first difference of integer times).
    Season phase (LSTM, m > 1): counted from each training series' first time on its step (config
    'series_starts'), so a known id's history read by predict, truncated or longer, keeps the phases training
    gave its values; one whose first time is off that calendar is refused by name. A new id's phases count from
    its first value (the model cannot know its calendar), as do predict_arrays' and models saved before
    series_starts.
    """

    def __init__(self, horizon: int, season_length: int = 1, input_length: int | None = None,
                 patch: int | None = None, quantiles=(0.1, 0.5, 0.9), hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", epochs: int = 30, batch_size: int | None = None, batches_per_epoch: int = 16,
                 lr: float | None = None, patience: int = 5, ensemble: int = 1, seed: int = 0, verbose: int = 0,
                 device="cpu", id_col: str = "unique_id", time_col: str = "ds", target_col: str = "y",
                 futr_exog_list=(), hist_exog_list=(), stat_exog_list=(), model: str = "lstm",
                 level_penalty: float = 0.0, refit: bool | None = None, loss_weights: str | None = None,
                 seasonality: str | None = None, snapshots: int = 1, trend: str | None = None, freq=None,
                 dilations=None):
        if model not in MODELS:
            raise ValueError(f"model: expected one of {', '.join(map(repr, MODELS))}, got {model!r}")
        batch_size = MODEL_DEFAULTS[model]["batch_size"] if batch_size is None else batch_size
        lr = MODEL_DEFAULTS[model]["lr"] if lr is None else lr
        refit = MODEL_DEFAULTS[model]["refit"] if refit is None else refit
        loss_weights = MODEL_DEFAULTS[model]["loss_weights"] if loss_weights is None else loss_weights
        if not isinstance(refit, (bool, np.bool_)):
            raise ValueError(f"refit: expected True or False, got {refit!r}")
        quantiles = _check_quantiles(quantiles)
        _check_sizes(horizon=horizon, season_length=season_length, hidden_size=hidden_size, num_layers=num_layers,
                     epochs=epochs, batch_size=batch_size, batches_per_epoch=batches_per_epoch, ensemble=ensemble,
                     patience=patience, seed=seed, input_length=input_length, patch=patch)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not np.isfinite(lr):
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if model == "esrnn":
            seasonality = "all" if seasonality is None else seasonality
            trend = "none" if trend is None else trend
            _require_esrnn_args(patch, futr_exog_list, hist_exog_list, stat_exog_list, level_penalty, loss_weights,
                                seasonality, snapshots, trend, dilations, num_layers)
            patch = 1  # ES-RNN reads one window of L values per time step (L: the LSTM's default, below)
        elif dilations is not None:
            raise ValueError(f"dilations: only model='esrnn' has a dilated stack, got {dilations!r} with "
                             f"model={model!r}; leave it out")
        elif snapshots != 1:
            raise ValueError(f"snapshots: only model='esrnn' keeps snapshot ensembles, got {snapshots!r} with "
                             f"model={model!r}; leave it out")
        elif trend is not None:
            raise ValueError(f"trend: only model='esrnn' smooths a trend, got {trend!r} with model={model!r}; "
                             "leave it out")
        elif seasonality is not None:
            raise ValueError(f"seasonality: only model='esrnn' smooths a season, got {seasonality!r} with "
                             f"model={model!r}; leave it out")
        elif loss_weights != "none":
            raise ValueError(f"loss_weights: only model='esrnn' weighs its loss, got {loss_weights!r} with "
                             f"model={model!r}; leave it out")
        patch = patch or windows.default_patch(season_length)
        L = input_length or windows.default_input_length(horizon, season_length, patch)
        if L % patch:
            raise ValueError(f"input_length {L} must be a multiple of patch {patch}")
        for name, lst in (("futr_exog_list", futr_exog_list), ("hist_exog_list", hist_exog_list),
                          ("stat_exog_list", stat_exog_list)):
            if isinstance(lst, str):
                raise ValueError(f"{name}: expected a list of column names, got the string {lst!r}")
        self.config = {"horizon": horizon, "season_length": season_length, "input_length": L, "patch": patch,
                       "quantiles": list(quantiles), "hidden_size": hidden_size, "num_layers": num_layers,
                       "cell": cell, "epochs": epochs, "batch_size": batch_size, "batches_per_epoch": batches_per_epoch,
                       "lr": lr, "patience": patience, "ensemble": ensemble, "seed": seed, "id_col": id_col,
                       "time_col": time_col, "target_col": target_col, "futr_exog_list": list(futr_exog_list),
                       "hist_exog_list": list(hist_exog_list), "stat_exog_list": list(stat_exog_list), "model": model,
                       "refit": bool(refit)}
        if model == "esrnn":
            self.config["level_penalty"] = float(level_penalty)
            self.config["loss_weights"] = loss_weights
            if seasonality != "all":  # absent means 'all', so configs saved before the option read the same
                self.config["seasonality"] = seasonality
            if snapshots != 1:  # absent means 1, likewise
                self.config["snapshots"] = int(snapshots)
            if trend != "none":  # absent means 'none', likewise
                self.config["trend"] = trend
            if dilations is not None:  # absent means one plain layer, likewise
                self.config["dilations"] = check_dilations(dilations)
        if freq is not None:  # absent means inferred, so configs saved before the option read the same
            self.config["freq"] = panel.freq_json(panel.check_freq(freq))
        self.config["members"] = [self._member(k) for k in range(ensemble)]
        self.verbose = verbose
        self.device = devices.resolve(device)
        self.models = None
        self.snapshots_ = None  # per member: models of the epochs before its own (ES-RNN snapshots > 1)
        self.history_ = []
        self._series = None

    @property
    def columns(self) -> panel.Columns:
        c = self.config
        return panel.Columns(c.get("id_col", "unique_id"), c.get("time_col", "ds"), c.get("target_col", "y"),
                             c.get("futr_exog_list", []), c.get("hist_exog_list", []), c.get("stat_exog_list", []))

    @property
    def freq(self):
        """The step every series must be on (``check_freq``'s: an int or a pandas offset), None to infer it."""
        return panel.check_freq(panel.freq_from_json(self.config.get("freq")))

    def _split(self, df, static_df=None, where: str = "df") -> dict:
        """``df`` checked and split into series by this model's columns and ``freq``."""
        return panel.split_series(df, self.columns, static_df, where, self.freq)

    def _member(self, k: int) -> dict:
        """Ensemble member k: seed + k and input length L, L + 2P, L − P, L + 4P, ... (at least 2P)."""
        c = self.config
        shift = [0, 2, -1, 4, 1, -2][k % 6] * c["patch"]
        return {"seed": c["seed"] + k, "input_length": max(c["input_length"] + shift, 2 * c["patch"])}

    def _input_size(self) -> int:
        """Per LSTM step: P values, the one-hot phase (m > 1), P values of each covariate, the statics."""
        c, cols = self.config, self.columns
        m = c["season_length"]
        return c["patch"] * (1 + len(cols.exog)) + (m if m > 1 else 0) + len(cols.stat_exog)

    def _build(self, member: dict, init_log_seasons=None):
        from .net import ForecastNet

        c = self.config
        seed_everything(member["seed"])
        if c.get("model", "lstm") == "esrnn":
            from .esrnn import ESRNN

            net = ESRNN(len(c["series_ids"]), c["season_length"], member["input_length"], c["horizon"],
                        len(c["quantiles"]), c["hidden_size"], c["num_layers"], c["cell"], init_log_seasons,
                        c.get("series_seasonal"), c.get("trend", "none") == "damped", c.get("dilations"))
            return net.to(self.device)
        net = ForecastNet(self._input_size(), c["horizon"], len(c["quantiles"]), c["hidden_size"], c["num_layers"],
                          c["cell"], future_size=c["horizon"] * len(self.columns.futr_exog))
        return net.to(self.device)

    # -- windows ------------------------------------------------------------------------------------------

    def _first_origin(self) -> int:
        return max(self.config["season_length"], 2) - 1

    def _design(self, parts: list, L: int):
        """Model inputs from raw windows. parts: (y (N, L), phase (N,), exog (N, L, K), static (N, S),
        future (N, H, F)) per series -> (inputs (N, L/P, In) float32, future (N, H·F) float32, levels (N,))."""
        c, cols = self.config, self.columns
        m, P, H = c["season_length"], c["patch"], c["horizon"]
        x, phase, ex, st, fu = (np.concatenate([p[i] for p in parts]) for i in range(5))
        inp, lv = windows.features(x, phase, m, P)  # (N, L/P, P + S)
        N, K, F = len(x), len(cols.exog), len(cols.futr_exog)
        blocks = [inp]
        if K:
            scale = np.asarray(c["exog_scale"])  # (K, 2): mean, std
            z = (ex - scale[:, 0]) / scale[:, 1]  # (N, L, K)
            blocks.append(z.reshape(N, L // P, P, K).transpose(0, 1, 3, 2).reshape(N, L // P, P * K))
        if cols.stat_exog:
            scale = np.asarray(c["static_scale"])
            z = (st - scale[:, 0]) / scale[:, 1]  # (N, S)
            blocks.append(np.repeat(z[:, None, :], L // P, axis=1))
        future = np.zeros((N, 0))
        if F:
            scale = np.asarray(c["exog_scale"])[:F]
            future = ((fu - scale[:, 0]) / scale[:, 1]).reshape(N, H * F)
        return np.concatenate(blocks, axis=2).astype(np.float32), future.astype(np.float32), lv

    def _cut(self, s: panel.Series, origins: np.ndarray, L: int, future=None, start: int = 0):
        """One series' raw windows ending at ``origins``: (y (N, L), phase (N,), exog (N, L, K), static (N, S),
        future-known covariates (N, H, F)) and the targets (N, H). ``future`` (H, F) overrides the covariates
        after the origin (predict: they come from futr_df, the series has no values there). ``start``: the
        position of y[0] in its training series (``_phase_starts``; 0 in training), which phases count from."""
        c, cols = self.config, self.columns
        H, m, F = c["horizon"], c["season_length"], len(cols.futr_exog)
        x, t = windows.cut(s.y, origins, L, H)
        ex_past, ex_next = [], []
        for k in range(len(cols.exog)):
            past, nxt = windows.cut(s.exog[:, k], origins, L, H)
            ex_past.append(past)
            ex_next.append(nxt)
        N = len(origins)
        ex = np.stack(ex_past, axis=2) if ex_past else np.zeros((N, L, 0))
        if future is not None:
            fu = np.repeat(np.asarray(future, np.float64)[None], N, axis=0)
        else:
            fu = np.stack(ex_next[:F], axis=2) if F else np.zeros((N, H, 0))
        phase = (start + origins + 1) % max(m, 1)
        return (x, phase, ex, np.repeat(s.static[None], N, axis=0), fu), t

    def _windows(self, series: dict, L: int, full: bool = False):
        """Training and validation tensors: (inputs (N, L/P, In), future (N, H·F), targets (N, H) normalised).
        ``full``: the training windows include the validation window (every origin whose targets are observed)."""
        import torch

        H, first = self.config["horizon"], self._first_origin()
        out = {}
        for name in ("train", "val"):
            parts, targets = [], []
            for s in series.values():
                n = len(s.y)
                origins = np.arange(first, n - (1 if full else 2) * H) if name == "train" else np.array([n - H - 1])
                origins = origins[origins >= first]
                if len(origins):
                    part, t = self._cut(s, origins, L)
                    parts.append(part)
                    targets.append(t)
            if not parts:
                out[name] = None
                continue
            inp, fut, lv = self._design(parts, L)
            target = (np.concatenate(targets) / lv[:, None] - 1.0).astype(np.float32)
            out[name] = (torch.from_numpy(inp), torch.from_numpy(fut), torch.from_numpy(target))
        if out["train"] is None:  # fit's _check_lengths refuses such data first, with the same number
            raise ValueError(f"df: no training windows: a series needs at least {self.min_length() + H} values")
        return out["train"], out["val"]

    def min_length(self) -> int:
        """The fewest values a series of fit's data may have: its validation window, ``horizon`` targets after
        max(season_length, 2) values (the first origin). fit also needs one series with ``horizon`` values more
        (a training window ending before its validation window); cross_validation this many before its first
        cutoff."""
        return self.config["horizon"] + self._first_origin() + 1

    def _check_lengths(self, lengths: dict, before: str = "") -> None:
        """{uid: values}: a series too short for its validation window, or no series long enough for a training
        window, refused up front with the numbers ``min_length`` gives (``before``: what the values are counted
        before, cross_validation's first cutoff)."""
        c = self.config
        need, train = self.min_length(), self.min_length() + c["horizon"]
        why = (f"{need} values for horizon {c['horizon']}, season {c['season_length']}: a validation window of "
               f"{c['horizon']} after {need - c['horizon']}{before}")
        short = [(u, n) for u, n in lengths.items() if n < need]
        if short:
            listed = ", ".join(f"{panel.name(u)} ({n})" for u, n in short[:5])
            raise ValueError(f"df: {len(short)} series too short to train on (need at least {why}): {listed}"
                             f"{' ...' if len(short) > 5 else ''}; drop them or lower the horizon")
        longest = max(lengths.values())
        if longest < train:
            raise ValueError(f"df: no series long enough to train on: each needs at least {why}, and one at "
                             f"least {train} (a training window before its validation window); the longest has "
                             f"{longest}; lower the horizon or give longer series")

    # -- fit ------------------------------------------------------------------------------------------

    @keeps_global_rng
    def fit(self, df, static_df=None, *, ckpt_dir: str | None = None, resume: bool = False,
            log=None) -> Forecaster:
        """Train on every series in ``df`` (id_col, time_col, target_col and the listed covariates; static ones
        in ``static_df``). Member k checkpoints into ckpt_dir/member-k. ``log``: where the member and epoch lines
        go (default: stdout when ``verbose``, else nowhere)."""
        import torch

        c = self.config
        series = self._split(df, static_df)
        self._check_lengths({u: len(s.y) for u, s in series.items()})
        self._remember(df, series)
        allx = np.concatenate([s.exog for s in series.values()])  # (sum n, K)
        c["exog_scale"] = _standardiser(allx)
        c["static_scale"] = _standardiser(np.stack([s.static for s in series.values()]))
        q = torch.tensor(c["quantiles"], dtype=torch.float32, device=self.device)
        if log is None:
            log = print if self.verbose else quiet

        esrnn = c.get("model", "lstm") == "esrnn"
        if esrnn:
            from . import esrnn as es

            train, val, full, init = self._esrnn_panel(series)

            def loss_fn(model, *batch):
                return es.esrnn_loss_terms(model, q, c["level_penalty"], *batch)  # weighted means: DDP-exact
        else:
            def loss_fn(model, x, future, target):
                return pinball(model(x, future), target, q)

        self.models, self.history_, self.snapshots_ = [], [], []
        snaps = c.get("snapshots", 1)
        for k, member in enumerate(c["members"]):
            if esrnn:
                flags = c.get("series_seasonal")
                log(f"member {k + 1}/{len(c['members'])} (ES-RNN): input {member['input_length']} values, "
                    f"{len(series)} series with their own smoothing parameters"
                    f"{'' if flags is None else f', {sum(flags)} of them seasonal (tested)'}")
                model = self._build(member, init)
            else:
                train, val = self._windows(series, member["input_length"])
                log(f"member {k + 1}/{len(c['members'])}: input {member['input_length']} values, "
                    f"{len(train[0])} training windows, {0 if val is None else len(val[0])} validation windows")
                model = self._build(member)
            cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], patience=c["patience"],
                              seed=member["seed"], batches_per_epoch=c["batches_per_epoch"],
                              progress=int(self.verbose) >= 2,
                              loss_unit="(pinball loss on log values over level and season)" if esrnn else
                              "(pinball loss on values divided by the window's level)")
            mdir = None if ckpt_dir is None else os.path.join(ckpt_dir, f"member-{k}")  # fit creates it on rank 0
            again = resume and resumable(mdir)  # rank 0 decides for all ranks: only it needs to see the folder
            self.history_.append(fit(model, loss_fn, train, val, cfg, task=TASK, config=c, ckpt_dir=mdir,
                                     resume=again, log=log, snapshots=snaps))
            last = self.history_[-1]
            if c.get("refit") and self.history_[-1]["best_epoch"]:
                if not esrnn:
                    full = self._windows(series, member["input_length"], full=True)[0]
                model = self._refit(member, full, loss_fn, cfg, self.history_[-1], mdir, resume, log,
                                    init if esrnn else None)
                last = last["refit"]
            self.models.append(model)
            self.snapshots_.append(self._keep_snapshots(model, last, self.history_[-1], log))
        if snaps > 1:
            c["member_snapshots"] = [len(x) + 1 for x in self.snapshots_]
        return self

    def _keep_snapshots(self, model, last: dict, history: dict, log) -> list:
        """The models of the epochs before the kept one (``last``: the fit whose model is final, the refit when it
        ran), rebuilt from the state dicts fit returned; the state dicts leave ``history`` (it stays JSON-able)."""
        import copy

        states = last.pop("snapshots", [])
        history.pop("snapshots", None)
        out = []
        for state in states:
            snap = copy.deepcopy(model)
            snap.load_state_dict(state)
            out.append(snap.eval())
        if self.config.get("snapshots", 1) > 1:
            log(f"snapshot ensemble: the forecasts of the last {len(out) + 1} epochs are averaged")
        return out

    def _refit(self, member: dict, full: tuple, loss_fn, cfg: TrainConfig, history: dict, mdir, resume: bool, log,
               init=None):
        """A fresh model trained on every window, the validation window included, for the best epoch count early
        stopping found (the validation window holds each series' latest values, which the early-stopped model
        never learned from). Its history goes into ``history['refit']``; checkpoints under mdir/refit."""
        import dataclasses

        epochs = history["best_epoch"]
        log(f"refit on every window, the validation window included, for {epochs} epochs (the best)")
        model = self._build(member, init)
        rdir = None if mdir is None else os.path.join(mdir, "refit")
        again = resume and resumable(rdir)  # rank 0 decides for all ranks: only it needs to see the folder
        history["refit"] = fit(model, loss_fn, full, None, dataclasses.replace(cfg, epochs=epochs), task=TASK,
                               config=self.config, ckpt_dir=rdir, resume=again, log=log,
                               snapshots=self.config.get("snapshots", 1))
        return model

    # -- ES-RNN ---------------------------------------------------------------------------------------

    def _esrnn_panel(self, series: dict) -> tuple:
        """ES-RNN's data, one row per series: training (idx, y, n, lo, hi, log_s0) on each series without its last
        H values (origins lo..hi, whose targets end before them), validation on the whole series (one origin, H
        before the end: the last H values are its targets), the refit data (every origin whose targets are observed)
        and the initial log seasonal indices (S, m)."""
        import torch

        from . import esrnn as es

        c = self.config
        H, m = c["horizon"], c["season_length"]
        c["series_shifts"] = [es.shift_of(s.y) for s in series.values()]
        ys = [s.y + d for s, d in zip(series.values(), c["series_shifts"])]  # all positive (module docstring)
        c["series_ids"] = [_plain(u) for u in series]
        c["series_heads"] = [s.y[:HEAD].tolist() for s in series.values()]
        s0 = np.stack([es.initial_log_seasons(y, m) for y in ys]).astype(np.float32)
        if c.get("seasonality", "all") == "tested":  # on all fit's data: shifting y leaves the test unchanged
            from .baselines import seasonality_test

            c["series_seasonal"] = [seasonality_test(y, m) for y in ys]
        idx = np.arange(len(ys))
        y_tr, n_tr = es.pad_panel([y[:-H] for y in ys])
        hi = n_tr - H - 1
        lo = np.minimum(max(m, 2) - 1, np.maximum(hi, 0))  # the first season's levels are still settling
        y_all, n_all = es.pad_panel(ys)

        def tensors(*arrays):
            return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)

        # MASE weights: each series' scale from its values before the validation window, in every tuple
        extra = (es.inverse_scales([y[:-H] for y in ys], m),) if c.get("loss_weights", "none") == "mase" else ()
        train = tensors(idx, y_tr, n_tr, lo, hi, s0, *extra)
        val = tensors(idx, y_all, n_all, n_all - H - 1, n_all - H - 1, s0, *extra)
        hi_all = n_all - H - 1
        full = tensors(idx, y_all, n_all, np.minimum(max(m, 2) - 1, hi_all), hi_all, s0, *extra)  # every origin
        return train, val, full, s0

    def _esrnn_rows(self, series: list) -> np.ndarray:
        """Each history's parameter row: its training series when the id is known and the history starts with the
        values that series started with (else its seasonal indices would be out of phase), −1 otherwise."""
        c = self.config
        rows = {str(u): i for i, u in enumerate(c["series_ids"])}
        out = np.full(len(series), -1, np.int64)
        for j, s in enumerate(series):
            i = rows.get(str(s.uid))
            if i is None:
                continue
            head = np.asarray(c["series_heads"][i], np.float64)
            k = min(len(head), len(s.y))
            if np.allclose(s.y[:k], head[:k], rtol=1e-9, atol=0.0):
                out[j] = i
        return out

    def _esrnn_forecast(self, series: list) -> np.ndarray:
        """(K, S, H, Q) each ES-RNN member's quantile forecasts."""
        from . import esrnn as es

        rows = self._esrnn_rows(series)
        shifts = self._esrnn_shifts(series, rows)
        ys = [s.y for s in series]
        # per member, the mean of its snapshot group's quantile forecasts (a group of one: the member's own, exactly)
        return np.stack([np.mean([es.forecast(g, rows, ys, shifts, self.device) for g in self._snapshot_group(k)],
                                 axis=0) for k in range(len(self.models))])

    def _snapshot_group(self, k: int) -> list:
        """Member k's models: its earlier epochs' snapshots (oldest first), then its own."""
        return [*(self.snapshots_[k] if self.snapshots_ else []), self.models[k]]

    def _esrnn_shifts(self, series: list, rows: np.ndarray) -> np.ndarray:
        """What each history is shifted by: its training series' shift (known row), else its own ``shift_of``;
        raised to the history's own when that is larger (a later value below the training minimum)."""
        from . import esrnn as es

        stored = self.config.get("series_shifts", [])
        own = np.array([es.shift_of(s.y) for s in series])
        known = np.array([stored[r] if r >= 0 else 0.0 for r in rows])
        return np.where(rows >= 0, np.maximum(known, own), own)

    def _esrnn_inputs(self, uid, member: int) -> np.ndarray:
        """(n, L) float32: the normalised windows member ``member``'s LSTM reads at each of series uid's steps."""
        import torch

        from . import esrnn as es

        s = self._series[uid]
        model = self.models[member]
        rows = self._esrnn_rows([s])
        shifted = s.y + self._esrnn_shifts([s], rows)[0]
        y, n = es.pad_panel([shifted])
        s0 = es.initial_log_seasons(shifted, model.season)[None].astype(np.float32)
        args = [torch.from_numpy(a).to(self.device) for a in (rows, y, n, s0)]
        with torch.no_grad():
            inputs = model.windows(*args, es.history_flags(model, rows, [shifted]))[0]
        return inputs[0].cpu().numpy().astype(np.float32)

    def _remember(self, df, series: dict) -> None:
        """Keep the training histories (for predict() without data), the input dtypes of id and time and each
        series' calendar (``_remember_starts``)."""
        cols = self.columns
        self._series = series
        self.config["id_dtype"] = str(df[cols.id_col].dtype)
        self.config["time_dtype"] = str(df[cols.time_col].dtype)
        self._remember_starts(series)

    def _remember_starts(self, series: dict) -> None:
        """config['series_starts']: {id text: [first time, step]} of every training series, the calendar its
        seasonal phases count from (training: the position since its first value), so that a later history of
        the same id, truncated or longer, is read at the phases training gave its values. The LSTM with a season
        only: ES-RNN recognises its histories by their first values (``_esrnn_rows``)."""
        c = self.config
        if c.get("model", "lstm") != "lstm" or c["season_length"] <= 1:
            return
        c["series_starts"] = {_id_key(u): [_time_json(s.times[0]), panel.freq_json(s.step)]
                              for u, s in series.items()}

    def _phase_starts(self, series: list) -> np.ndarray:
        """(S,) the position of each history's first value in its training series (the steps from that series'
        first time to the history's first time), which its phases count from. 0 (phases from the history's own
        first value) for a new id, a model saved before series_starts existed, and a history without times
        (restored by ``load``: whole seasons were dropped, so it is in phase; ``predict_arrays``)."""
        table = self.config.get("series_starts")
        out = np.zeros(len(series), np.int64)
        if not table:
            return out
        for j, s in enumerate(series):
            known = table.get(_id_key(s.uid))
            if known is not None and s.times is not None:
                out[j] = self._steps_from_start(s, _time_from_json(known[0]), panel.freq_from_json(known[1]))
        return out

    def _steps_from_start(self, s: panel.Series, start, step) -> int:
        """Steps from a training series' first time ``start`` to history ``s``'s first time, on the training step;
        a history off that calendar is refused: the phase of its values would be unknown."""
        k = panel.steps_between(start, s.times[0], step)
        if k is None:
            t = self.columns.time_col
            raise ValueError(f"df: series {panel.name(s.uid)} starts at {t} {s.times[0]}, which is not on the calendar "
                             f"the model was trained on for that id (first {t} {start}, step "
                             f"{panel.freq_json(step)!r}), so the season phase of its values is unknown; give "
                             "the times on that calendar, or another id to forecast it as a new series")
        return k

    # -- predict --------------------------------------------------------------------------------------

    def _forecast(self, series: list, futures: list) -> np.ndarray:
        """Quantile forecasts from the end of each series: (S, H, Q), ensemble median, quantiles sorted."""
        pred = np.median(self._member_forecasts(series, futures), axis=0)
        return np.sort(pred, axis=-1)  # quantiles never cross

    def _member_forecasts(self, series: list, futures: list) -> np.ndarray:
        """(K, S, H, Q): each ensemble member's quantile forecasts from the end of each series."""
        import torch

        if self.models is None:
            raise ValueError("Forecaster: call fit() or load() first")
        if self.config.get("model", "lstm") == "esrnn":
            return self._esrnn_forecast(series)
        outs, starts = [], self._phase_starts(series)
        for model, member in zip(self.models, self.config["members"]):
            L = member["input_length"]
            parts = []
            for s, fu, k in zip(series, futures, starts):  # the origin is the last value, k + len(y) - 1 in training
                parts.append(self._cut(s, np.array([len(s.y) - 1]), L, future=fu, start=k)[0])
            inp, fut, lv = self._design(parts, L)
            model.eval()
            with torch.no_grad():
                z = model(*devices.to((torch.from_numpy(inp), torch.from_numpy(fut)), self.device))
            z = z.cpu().numpy()  # (S, H, Q)
            outs.append((z + 1.0) * lv[:, None, None])
        return np.stack(outs)

    def window_input(self, series_id=None, member: int = 0) -> tuple:
        """What ensemble member ``member``'s recurrent layer reads to forecast series ``series_id`` (default:
        the first) from its last value, built as predict builds it: (id, inputs (L/P, In) float32) — the
        level-scaled patches, the one-hot phase, the standardised covariates, the statics. ES-RNN: (id, inputs
        (n, L)), the deseasonalised, level-divided log window at each of the series' n steps (its LSTM runs
        over the steps). The series come from
        fit's data or the histories a loaded model carries; an id is matched as given or by its text."""
        if self._series is None:
            raise ValueError("Forecaster: no series to read; call fit() or load a saved model")
        members = self.config["members"]
        if not 0 <= member < len(members):
            raise ValueError(f"member: expected an ensemble member in [0, {len(members)}), got {member}")
        uid = self._series_id(series_id)
        if self.config.get("model", "lstm") == "esrnn":
            return uid, self._esrnn_inputs(uid, member)
        s, H, F = self._series[uid], self.config["horizon"], len(self.columns.futr_exog)
        L = members[member]["input_length"]
        # future-known covariates feed the head, not the recurrent layer: zeros stand in for them here
        part = self._cut(s, np.array([len(s.y) - 1]), L, future=np.zeros((H, F)), start=self._phase_starts([s])[0])[0]
        return uid, self._design([part], L)[0][0]

    def _series_id(self, series_id):
        ids = list(self._series)
        if series_id is None:
            return ids[0]
        for uid in ids:
            if uid == series_id or str(uid) == str(series_id):
                return uid
        shown = ", ".join(map(str, ids[:8])) + (" ..." if len(ids) > 8 else "")
        raise ValueError(f"series: no series {series_id!r} in this model's data ({len(ids)} series: {shown})")

    def predict_arrays(self, ys: dict, members: bool = False) -> np.ndarray:
        """(S, H, Q) from plain target histories {id: y (n,)} in ``ys`` order (a model without covariates);
        ``members=True``: (K, S, H, Q), each ensemble member's own forecasts (quantiles as the member gave them).
        Without times the season phase counts from each history's first value, as in training: pass a training
        series' history from its start (or whole seasons later), or use predict(df) to place it by its times."""
        cols = self.columns
        if cols.exog or cols.stat_exog:
            raise ValueError("predict_arrays: this model reads covariates; use predict(df, futr_df=...)")
        series = [panel.Series(u, _history_array(u, y), np.zeros((len(y), 0)), np.zeros(0), len(y) - 1, 1)
                  for u, y in ys.items()]
        H = self.config["horizon"]
        futures = [np.zeros((H, 0))] * len(series)
        return self._member_forecasts(series, futures) if members else self._forecast(series, futures)

    def predict(self, df=None, static_df=None, futr_df=None):
        """Forecast the next ``horizon`` steps of every series in ``df`` (default: the data fit saw, or the
        histories a loaded model carries). ``futr_df``: id_col, time_col and futr_exog_list at each series' next
        H times; ``static_df`` for a df of other series (default: fit's statics). A training series' history may
        start later or earlier than fit's: its season phase follows its times (``_phase_starts``); a new id's
        counts from its first value.
        Returns a DataFrame: id_col (its input dtype), time_col (datetimes when the input had them), step, yhat
        (the median) and one column per quantile ('q0.1', ...)."""
        cols = self.columns
        if df is not None:
            if static_df is None and cols.stat_exog and self._series is not None:
                static_df = self._static_frame()
            series = self._split(df, static_df)
            id_dtype, time_dtype = df[cols.id_col].dtype, df[cols.time_col].dtype
        elif self._series is not None:
            series = self._series
            id_dtype, time_dtype = self.config.get("id_dtype", "object"), self.config.get("time_dtype")
        else:
            raise ValueError("predict: this model carries no histories; pass df")
        H = self.config["horizon"]
        futures = panel.future_exog(futr_df, cols, series, H)
        pred = self._forecast(list(series.values()), [futures[u] for u in series])
        return self._frame(list(series.values()), pred, id_dtype, time_dtype)

    def _frame(self, series: list, pred: np.ndarray, id_dtype, time_dtype, extra: dict | None = None):
        H = self.config["horizon"]
        uids = np.repeat(np.asarray([s.uid for s in series], dtype=object), H)
        times = [t for s in series for t in panel.future_times(s, H)]
        columns = dict(extra or {})  # cross_validation's cutoff first, as neuralforecast; its y last
        target = columns.pop(self.columns.target_col, None)
        columns.update({"step": np.tile(np.arange(1, H + 1), len(series)), "yhat": pred[:, :, self._median()].ravel()})
        for j, qv in enumerate(self.config["quantiles"]):
            columns[f"q{qv:g}"] = pred[:, :, j].ravel()
        if target is not None:
            columns[self.columns.target_col] = target
        return panel.output_frame(list(uids), times, self.columns, id_dtype, time_dtype, columns)

    def _static_frame(self):
        import pandas as pd

        cols = self.columns
        return pd.DataFrame({cols.id_col: list(self._series),
                             **{c: [s.static[i] for s in self._series.values()]
                                for i, c in enumerate(cols.stat_exog)}})

    def _median(self) -> int:
        return self.config["quantiles"].index(0.5)

    # -- cross-validation -----------------------------------------------------------------------------

    @keeps_global_rng
    def cross_validation(self, df, static_df=None, n_windows: int = 1, step_size: int | None = None, log=None):
        """neuralforecast's cross_validation: fit on each series up to its first cutoff, then forecast H steps
        from each of ``n_windows`` cutoffs ``step_size`` (default H) apart, the last ending at the series' end.
        Returns a DataFrame: id_col, time_col, cutoff, step, yhat, the quantile columns and target_col (the
        actual values) — the forecasts beside y per cutoff. Leaves the model fitted on the first cutoff's data."""
        c, cols = self.config, self.columns
        H = c["horizon"]
        step_size = H if step_size is None else step_size
        if not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
            raise ValueError(f"n_windows: expected an integer >= 1, got {n_windows!r}")
        if not isinstance(step_size, (int, np.integer)) or step_size < 1:
            raise ValueError(f"step_size: expected an integer >= 1, got {step_size!r}")
        series = self._split(df, static_df)
        back = H + (n_windows - 1) * step_size  # values after the first cutoff
        self._check_lengths({u: max(len(s.y) - back, 0) for u, s in series.items()},
                            f", before the first cutoff (the last {back} values are for {n_windows} window(s) of {H} "
                            f"steps, {step_size} apart)")
        train = self._truncate(df, series, back)
        self.fit(train, static_df, log=log)
        frames = []
        for k in range(n_windows):
            cut = back - k * step_size  # values after this cutoff
            hist = [s.head(len(s.y) - cut) for s in series.values()]
            future = [s.exog[len(s.y) - cut:len(s.y) - cut + H, :len(cols.futr_exog)] for s in series.values()]
            pred = self._forecast(hist, future)
            actual = np.concatenate([s.y[len(s.y) - cut:len(s.y) - cut + H] for s in series.values()])
            cutoff = np.repeat(np.asarray([h.last for h in hist], dtype=object), H)
            frames.append(self._frame(hist, pred, df[cols.id_col].dtype, df[cols.time_col].dtype,
                                      {"cutoff": cutoff, cols.target_col: actual}))
        import pandas as pd

        out = pd.concat(frames, ignore_index=True)
        if pd.api.types.is_datetime64_any_dtype(df[cols.time_col]):
            out["cutoff"] = pd.to_datetime(out["cutoff"])
        else:
            out["cutoff"] = out["cutoff"].astype(df[cols.time_col].dtype)
        return out

    def _truncate(self, df, series: dict, back: int):
        """df without each series' last ``back`` rows (in time order)."""
        cols = self.columns
        d = df.sort_values([cols.id_col, cols.time_col], kind="stable")
        pos = d.groupby(cols.id_col, sort=False).cumcount().to_numpy()
        n = d[cols.id_col].map({u: len(s.y) for u, s in series.items()}).to_numpy()
        return d[pos < n - back]

    # -- save / load -------------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """All members' weights, the config and each series' recent history in one safetensors file (read by
        ``Forecaster.load`` and ``lstmkit predict``): a loaded model's predict() forecasts the same series."""
        import torch

        if self.models is None:
            raise ValueError("Forecaster.save: call fit() first")
        config = {**self.config, "history": self._history_json() if self._series is not None else None}
        extra = [m for group in (self.snapshots_ or []) for m in group]  # after the members: older files load
        checkpoint.save(path, task=TASK, config=config, model=torch.nn.ModuleList(self.models + extra))

    def _history_json(self) -> dict:
        """The last values each member needs (a multiple of the season dropped: restored without times, a history's
        phases count from its first value, which stays in phase)."""
        import pandas as pd

        c = self.config
        keep = max(mb["input_length"] for mb in c["members"])
        if c.get("model", "lstm") == "esrnn":
            keep = max(len(s.y) for s in self._series.values())  # Holt-Winters runs from each series' start
        m = max(c["season_length"], 1)
        rows = []
        for s in self._series.values():
            drop = max(len(s.y) - keep, 0) // m * m
            rows.append({"id": _plain(s.uid), "y": s.y[drop:].tolist(), "exog": s.exog[drop:].tolist(),
                         "static": s.static.tolist(), "last": _time_json(s.last), "step": panel.freq_json(s.step)})
        return {"datetime": isinstance(next(iter(self._series.values())).last, pd.Timestamp), "series": rows}

    @classmethod
    @keeps_global_rng
    def load(cls, path: str, device="cpu") -> Forecaster:
        """A fitted Forecaster from ``save``'s file (or a ``lstmkit forecast`` run's model.safetensors), its
        model on ``device``."""
        import torch

        ck = checkpoint.load(path, task=TASK)
        c = ck["config"]
        fc = cls(c["horizon"], c["season_length"], c["input_length"], c["patch"], c["quantiles"], c["hidden_size"],
                 c["num_layers"], c["cell"], ensemble=c["ensemble"], seed=c["seed"], device=device,
                 model=c.get("model", "lstm"))
        history = c.pop("history", None)
        fc.config = c
        fc.models = [fc._build(m) for m in c["members"]]
        fc.snapshots_ = [[fc._build(m) for _ in range(count - 1)]
                         for m, count in zip(c["members"], c.get("member_snapshots", [1] * len(c["members"])))]
        extra = [m for group in fc.snapshots_ for m in group]
        torch.nn.ModuleList(fc.models + extra).load_state_dict(ck["model"])
        fc._series = _series_from_json(history, fc.columns) if history else None
        return fc


def _plain(v):
    """A JSON-able Python scalar from a numpy one."""
    return v.item() if hasattr(v, "item") else v


def _history_array(uid, y) -> np.ndarray:
    """predict_arrays' history of series ``uid`` as float64 (n,), n >= 1, every value finite (as predict(df)
    refuses a NaN in y): a NaN in the input window would come out as NaN forecasts, an inf as meaningless ones."""
    values = np.asarray(y, np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"ys[{uid!r}]: expected a non-empty 1-D history, got shape {values.shape}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"ys[{uid!r}]: {len(bad)} value(s) are not finite (first at position {bad[0]}: "
                         f"{values[bad[0]]}); fill or drop them before forecasting")
    return values


def _id_key(uid) -> str:
    """A series id as a JSON key: its text, so 101 and np.int64(101) (and '101') name the same series, as in
    ES-RNN's ``_esrnn_rows``."""
    return str(_plain(uid))


def _time_json(t):
    """A time as JSON: a datetime's ISO text, an integer as it is; ``_time_from_json`` reads it back."""
    import pandas as pd

    return t.isoformat() if isinstance(t, pd.Timestamp) else _plain(t)


def _time_from_json(t):
    import pandas as pd

    return pd.Timestamp(t) if isinstance(t, str) else t


def _series_from_json(history: dict, cols: panel.Columns) -> dict:
    out = {}
    K = len(cols.exog)
    for r in history["series"]:
        last = _time_from_json(r["last"])  # _time_json's ISO text for a datetime
        out[r["id"]] = panel.Series(r["id"], np.asarray(r["y"], np.float64),
                                    np.asarray(r["exog"], np.float64).reshape(len(r["y"]), K),
                                    np.asarray(r["static"], np.float64), last, panel.freq_from_json(r["step"]))
    return out
