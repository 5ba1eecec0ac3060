"""Global LSTM forecasting: ``Forecaster`` (scikit-learn style) over long-format data (unique_id, ds, y).

    fc = Forecaster(horizon=8, season_length=4).fit(df)
    fc.predict()            # DataFrame: unique_id, ds, step, yhat, q0.1, q0.5, q0.9 (the next 8 steps)
    fc.predict(history_df)  # forecasts from the end of other (or truncated) histories

One model (or a median ensemble of ``ensemble`` models with different seeds and input lengths) is trained
on windows from all series at once, with the pinball (quantile) loss on level-normalised values
(see ``lstmkit.tasks.windows``). The last ``horizon`` values of every series are the validation targets for
early stopping; training windows end before them.
"""
from __future__ import annotations

import os

import numpy as np

from . import checkpoint, windows
from .training import TrainConfig, fit, seed_everything

TASK = "forecast"


def series_dict(df) -> dict:
    """Long-format frame -> {unique_id: y (n,) float64}, in ds order."""
    missing = {"unique_id", "ds", "y"} - set(df.columns)
    if missing:
        raise ValueError(f"df: missing column(s) {', '.join(sorted(missing))}; expected unique_id, ds, y")
    df = df.sort_values(["unique_id", "ds"])
    return {str(k): g["y"].to_numpy(np.float64) for k, g in df.groupby("unique_id", sort=False)}


def pinball(pred, target, quantiles):
    """Mean quantile (pinball) loss: pred (B, H, Q), target (B, H), quantiles (Q,) tensor -> scalar."""
    import torch

    err = target.unsqueeze(-1) - pred
    return torch.maximum(quantiles * err, (quantiles - 1) * err).mean()


class Forecaster:
    """Global LSTM forecaster with quantile outputs.

    horizon H, season_length m (1 = none), input_length L (default max(2H, 3m), a multiple of patch),
    patch P values per LSTM step, quantiles (must include 0.5: the point forecast).
    """

    def __init__(self, horizon: int, season_length: int = 1, input_length: int | None = None,
                 patch: int | None = None, quantiles=(0.1, 0.5, 0.9), hidden_size: int = 64, num_layers: int = 1,
                 cell: str = "lstm", epochs: int = 30, batch_size: int = 512, batches_per_epoch: int = 16,
                 lr: float = 3e-3, patience: int = 5, ensemble: int = 1, seed: int = 0, progress: bool = True):
        if 0.5 not in quantiles:
            raise ValueError("quantiles: must include 0.5 (the point forecast)")
        if horizon < 1 or season_length < 1:
            raise ValueError("horizon and season_length must be ≥ 1")
        patch = patch or windows.default_patch(season_length)
        L = input_length or windows.default_input_length(horizon, season_length, patch)
        if L % patch:
            raise ValueError(f"input_length {L} must be a multiple of patch {patch}")
        self.config = dict(horizon=horizon, season_length=season_length, input_length=L, patch=patch,
                           quantiles=list(quantiles), hidden_size=hidden_size, num_layers=num_layers, cell=cell,
                           epochs=epochs, batch_size=batch_size, batches_per_epoch=batches_per_epoch, lr=lr,
                           patience=patience, ensemble=ensemble, seed=seed)
        self.config["members"] = [self._member(k) for k in range(ensemble)]
        self.progress = progress
        self.models = None
        self.history_ = []

    def _member(self, k: int) -> dict:
        """Ensemble member k: seed + k and input length L, L + 2P, L − P, L + 4P, ... (at least 2P)."""
        c = self.config
        shift = [0, 2, -1, 4, 1, -2][k % 6] * c["patch"]
        return {"seed": c["seed"] + k, "input_length": max(c["input_length"] + shift, 2 * c["patch"])}

    def _input_size(self) -> int:
        m = self.config["season_length"]
        return self.config["patch"] + (m if m > 1 else 0)

    def _build(self, member: dict):
        from .models import ForecastNet

        c = self.config
        seed_everything(member["seed"])
        return ForecastNet(self._input_size(), c["horizon"], len(c["quantiles"]), c["hidden_size"], c["num_layers"],
                           c["cell"])

    def _windows(self, ys: dict, L: int):
        """Training and validation tensors (inputs (N, L/P, F), targets (N, H) normalised)."""
        import torch

        c = self.config
        H, m, P = c["horizon"], c["season_length"], c["patch"]
        first = max(m, 2) - 1
        parts = {"train": ([], [], []), "val": ([], [], [])}
        for y in ys.values():
            n = len(y)
            for name, origins in (("train", np.arange(first, n - 2 * H)), ("val", np.array([n - H - 1]))):
                origins = origins[origins >= first]
                if len(origins) == 0:
                    continue
                x, t = windows.cut(y, origins, L, H)
                parts[name][0].append(x)
                parts[name][1].append(t)
                parts[name][2].append((origins + 1) % max(m, 1))
        out = {}
        for name, (xs, ts, ph) in parts.items():
            if not xs:
                out[name] = None
                continue
            x, t, phase = np.concatenate(xs), np.concatenate(ts), np.concatenate(ph)
            inp, lv = windows.features(x, phase, m, P)
            target = (t / lv[:, None] - 1.0).astype(np.float32)
            out[name] = (torch.from_numpy(inp), torch.from_numpy(target))
        if out["train"] is None:
            raise ValueError(f"no training windows: every series needs more than {2 * H + first} values")
        return out["train"], out["val"]

    def fit(self, df, *, ckpt_dir: str | None = None, resume: bool = False, log=print) -> "Forecaster":
        """Train on every series in ``df`` (unique_id, ds, y). Member k checkpoints into ckpt_dir/member-k."""
        import torch

        c = self.config
        ys = series_dict(df)
        self._history = ys
        q = torch.tensor(c["quantiles"], dtype=torch.float32)

        def loss_fn(model, x, target):
            return pinball(model(x), target, q)

        self.models, self.history_ = [], []
        for k, member in enumerate(c["members"]):
            train, val = self._windows(ys, member["input_length"])
            log(f"member {k + 1}/{len(c['members'])}: input {member['input_length']} values, "
                f"{len(train[0])} training windows, {0 if val is None else len(val[0])} validation windows")
            model = self._build(member)
            cfg = TrainConfig(epochs=c["epochs"], batch_size=c["batch_size"], lr=c["lr"], patience=c["patience"],
                              seed=member["seed"], batches_per_epoch=c["batches_per_epoch"], progress=self.progress)
            mdir = None
            if ckpt_dir is not None:
                mdir = os.path.join(ckpt_dir, f"member-{k}")
                os.makedirs(mdir, exist_ok=True)
            again = resume and mdir is not None and os.path.isfile(os.path.join(mdir, "last.safetensors"))
            self.history_.append(fit(model, loss_fn, train, val, cfg, task=TASK, config=c, ckpt_dir=mdir,
                                     resume=again, log=log))
            self.models.append(model)
        return self

    def predict_arrays(self, ys: dict) -> np.ndarray:
        """Quantile forecasts from the end of each series: (S, H, Q) in ``ys`` order, ensemble median."""
        import torch

        if self.models is None:
            raise ValueError("Forecaster: call fit() or load() first")
        c = self.config
        m, P = c["season_length"], c["patch"]
        outs = []
        for model, member in zip(self.models, c["members"]):
            L = member["input_length"]
            xs, phases = [], []
            for y in ys.values():
                x, _ = windows.cut(np.asarray(y, np.float64), np.array([len(y) - 1]), L, c["horizon"])
                xs.append(x)
                phases.append(len(y) % max(m, 1))
            inp, lv = windows.features(np.concatenate(xs), np.asarray(phases), m, P)
            model.eval()
            with torch.no_grad():
                z = model(torch.from_numpy(inp)).numpy()  # (S, H, Q)
            outs.append((z + 1.0) * lv[:, None, None])
        pred = np.median(np.stack(outs), axis=0)
        return np.sort(pred, axis=-1)  # quantiles never cross

    def predict(self, df=None):
        """Forecast the next ``horizon`` steps of every series in ``df`` (default: the training data).
        Returns a DataFrame: unique_id, ds, step, yhat (median) and one column per quantile ('q0.1', ...)."""
        import pandas as pd

        ys = series_dict(df) if df is not None else self._history
        last = None
        if df is not None:
            last = df.sort_values("ds").groupby(df["unique_id"].astype(str))["ds"].agg(list)
        pred = self.predict_arrays(ys)
        H, rows = self.config["horizon"], []
        for i, (uid, y) in enumerate(ys.items()):
            ds = _future_ds(last[uid] if last is not None else list(range(len(y))), H)
            frame = {"unique_id": uid, "ds": ds, "step": np.arange(1, H + 1), "yhat": pred[i, :, self._median()]}
            for j, qv in enumerate(self.config["quantiles"]):
                frame[f"q{qv:g}"] = pred[i, :, j]
            rows.append(pd.DataFrame(frame))
        return pd.concat(rows, ignore_index=True)

    def _median(self) -> int:
        return self.config["quantiles"].index(0.5)

    def save(self, path: str) -> None:
        """All members' weights and the config in one safetensors file (read by ``lstmkit predict``)."""
        import torch

        checkpoint.save(path, task=TASK, config=self.config, model=torch.nn.ModuleList(self.models))

    @classmethod
    def load(cls, path: str) -> "Forecaster":
        import torch

        ck = checkpoint.load(path, task=TASK)
        c = ck["config"]
        fc = cls(c["horizon"], c["season_length"], c["input_length"], c["patch"], c["quantiles"], c["hidden_size"],
                 c["num_layers"], c["cell"], ensemble=c["ensemble"], seed=c["seed"], progress=False)
        fc.config = c
        fc.models = [fc._build(m) for m in c["members"]]
        torch.nn.ModuleList(fc.models).load_state_dict(ck["model"])
        fc._history = None
        return fc


def _future_ds(ds: list, H: int) -> list:
    """The H dates (or integer indices) after the last of ``ds``, stepping by its last difference."""
    import pandas as pd

    if len(ds) >= 2 and isinstance(ds[-1], pd.Timestamp):
        freq = pd.infer_freq(pd.DatetimeIndex(ds[-min(len(ds), 30):])) if len(ds) >= 3 else None
        if freq:
            return list(pd.date_range(ds[-1], periods=H + 1, freq=freq)[1:])
    step = (ds[-1] - ds[-2]) if len(ds) >= 2 else 1
    return [ds[-1] + step * (k + 1) for k in range(H)]
