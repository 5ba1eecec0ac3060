"""ES-RNN (Smyl 2020, the M4 winner), our own version: per-series Holt-Winters normalisation learned jointly with a
global LSTM.

Each training series i owns three learned things: a level smoothing coefficient alpha_i, a seasonal smoothing
coefficient gamma_i (both sigmoid of a free parameter) and m initial seasonal indices s_i[0..m-1] (exp of a free
parameter). Multiplicative Holt-Winters without trend runs over the series:

    l_0 = y_0 / s_0                          s_{m}   = gamma·y_0/l_0 + (1 − gamma)·s_0
    l_t = alpha·y_t/s_t + (1 − alpha)·l_{t−1}    s_{t+m} = gamma·y_t/l_t + (1 − gamma)·s_t

At every origin t the LSTM reads the last L values deseasonalised and divided by the level, in logs,
log(y_{t−L+1..t} / s_{t−L+1..t}) − log l_t, one window per time step (the recurrence runs over origins, as in
Smyl's model, so its state carries the series' history), and predicts the quantiles of log(y_{t+k} / (l_t ·
ŝ_{t+k})), k = 1..H, where ŝ_{t+k} = s_{t+1+((k−1) mod m)} are the last m seasonal indices known at t (none of
them uses a value after t). The forecast is exp(output) · l_t · ŝ_{t+k}. The pinball loss trains the smoothing
parameters and the LSTM together; a penalty on the wiggliness of log l_t (Smyl's level variability penalty)
keeps the level smooth. Series of any length share one padded batch: positions past a series' end change
nothing (masked), so each series' states are those of its own values.

A series the model was not trained on (or a known id whose history no longer starts where it did in training:
its seasonal indices would be out of phase) gets the mean learned alpha and gamma and seasonal indices estimated
from its own first seasons (``initial_log_seasons``). Built with ``seasonal`` (one flag per training series;
Forecaster(seasonality='tested')), a series whose flag is False gets no seasonal component: gamma 0 and initial
indices 1, so s_t = 1 throughout and the LSTM reads the series divided by its level alone; a history with no row
is flagged by the same test (``baselines.seasonality_test``) at forecast time.

Built with ``trend=True`` (Forecaster(trend='damped')), the level also carries a damped trend in logs, b_t, with
per-series beta (sigmoid) and damping phi (sigmoid), Gardner's damped Holt in log space:

    l_t = alpha·y_t/s_t + (1 − alpha)·l_{t−1}·exp(phi·b_{t−1})      b_0 = 0
    b_t = beta·(log l_t − log l_{t−1}) + (1 − beta)·phi·b_{t−1}

and the forecast's level is l_t·exp(Φ_k·b_t), Φ_k = phi + phi² + ... + phi^k: the targets are normalised by it,
so the LSTM models what the damped trend leaves.

Built with ``dilations`` (Forecaster(dilations=((1, 3), (6, 12)))), the single LSTM layer becomes Smyl's dilated
stack (``DilatedStack``): blocks of layers, one layer per dilation d, where step t's recurrent input is the state of
step t − d (so a layer of dilation 12 carries a state from the same month a year before); each block after the
first adds its input to its output (a residual connection). Every step still reads only its own origin and earlier
ones.

The model works in logs: a series with a value <= 0 is shifted up by ``shift_of`` (stored per training series) and
the shift taken off its forecasts.
"""
from __future__ import annotations

import numpy as np

from ..models import nn, recurrent_layer, torch


def fold(x, d: int):
    """(B, T, F) -> (B·d, J, F), J = ceil(T / d): the d interleaved subsequences of x as batch rows, row b·d + r
    holding steps r, r + d, r + 2d, ... of sequence b (T zero-padded at the end up to J·d). A recurrent layer run
    over the folded rows carries step t's state to step t + d: a dilated layer of dilation d."""
    B, T, F = x.shape
    J = -(-T // d)
    if J * d != T:  # padding after the last step: no real step reads it
        x = torch.cat([x, x.new_zeros(B, J * d - T, F)], 1)
    return x.reshape(B, J, d, F).transpose(1, 2).reshape(B * d, J, F)


def unfold(z, d: int, T: int):
    """``fold``'s inverse: (B·d, J, F) -> (B, T, F), the padded steps past T dropped."""
    Bd, J, F = z.shape
    return z.reshape(Bd // d, d, J, F).transpose(1, 2).reshape(Bd // d, J * d, F)[:, :T]


class DilatedStack(nn.Module):
    """Smyl's dilated recurrent stack: ``dilations`` blocks of layers, e.g. ((1, 3), (6, 12)) is two blocks of two
    layers, each layer one ``recurrent_layer`` (one lstmkit LSTM or GRU layer) of ``hidden_size`` run over
    ``fold(x, d)``: its step t reads the state of step t − d. Each block but the first adds its input to its
    output (residual; the first block's input has ``input_size`` features, not ``hidden_size``).

    forward(x (B, T, input_size)) -> (out (B, T, hidden_size), None): the ``nn.LSTM`` calling convention, with no
    final state (the states of the d subsequences end at different steps).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, dilations):
        super().__init__()
        self.dilations = tuple(tuple(int(d) for d in block) for block in dilations)
        sizes = iter([input_size] + [hidden_size] * (sum(map(len, self.dilations)) - 1))
        self.blocks = nn.ModuleList(nn.ModuleList(recurrent_layer(cell, next(sizes), hidden_size)
                                                  for _ in block) for block in self.dilations)

    def forward(self, x):
        T = x.shape[1]
        for k, (block, ds) in enumerate(zip(self.blocks, self.dilations)):
            z = x
            for layer, d in zip(block, ds):
                z = unfold(layer(fold(z, d))[0], d, T)
            x = z + x if k > 0 else z
        return x, None


def shift_of(y: np.ndarray) -> float:
    """What to add to a series so every value is positive: 0 when it already is, else −min + 10% of its mean
    absolute value (1 for an all-zero series), so a zero becomes a small positive level, not a huge ratio."""
    low = float(np.min(y))
    if low > 0:
        return 0.0
    scale = float(np.mean(np.abs(y)))
    return -low + (0.1 * scale if scale > 0 else 1.0)


def initial_log_seasons(y: np.ndarray, m: int, n_seasons: int = 3) -> np.ndarray:
    """Data estimate of log seasonal indices (m,): the mean over the first ``n_seasons`` whole seasons of log y
    minus that season's mean log; zeros when m == 1 or the series is shorter than one season."""
    k = min(n_seasons, len(y) // m) if m > 1 else 0
    if k == 0:
        return np.zeros(m)
    logs = np.log(np.asarray(y[:k * m], np.float64)).reshape(k, m)
    return (logs - logs.mean(1, keepdims=True)).mean(0)


class ESRNN(nn.Module):
    """Per-series Holt-Winters parameters for ``n_series`` series and a global LSTM over normalised windows.

    forward(idx, y, n, log_s0, seasonal=None) -> (pred (B, T, H, Q) log-normalised quantiles at every origin,
    target (B, T, H) the log-normalised actual values (0 past the series' end), log_level (B, T), log offsets
    (B, T, H): log ŝ (plus the damped trend's growth) that a forecast adds back with log_level). idx (B,) long:
    the series' rows (−1: not a training series), y (B, T) positive values padded past each length n (B,) with
    ones, log_s0 (B, m): the initial log seasonal indices used where idx is −1; seasonal (B,) bool: which −1 rows
    have a season (read only when the model has per-series flags). ``seasonal`` (n_series,) bool: each training
    series' flag (None: all seasonal); ``trend``: a damped trend in the level (module docstring); ``dilations``:
    blocks of dilations, e.g. ((1, 3), (6, 12)), for a ``DilatedStack`` in place of the ``num_layers``-layer
    recurrent layer (None, the default: that layer).
    """

    def __init__(self, n_series: int, season: int, input_length: int, horizon: int, n_quantiles: int,
                 hidden_size: int = 64, num_layers: int = 1, cell: str = "lstm", init_log_seasons=None,
                 seasonal=None, trend: bool = False, dilations=None):
        super().__init__()
        # (n_series,) bool or None (every series seasonal); not in the state dict: the Forecaster's config keeps it
        self.seasonal = None if seasonal is None else torch.as_tensor(np.asarray(seasonal, bool)).reshape(n_series)
        self.season, self.input_length, self.horizon, self.n_quantiles = season, input_length, horizon, n_quantiles
        self.alpha_logit = nn.Parameter(torch.zeros(n_series))  # alpha 0.5 at the start
        self.gamma_logit = nn.Parameter(torch.full((n_series,), -1.0))  # gamma 0.27
        init = torch.zeros(n_series, season) if init_log_seasons is None else \
            torch.as_tensor(np.asarray(init_log_seasons), dtype=torch.float32).reshape(n_series, season)
        self.log_s0 = nn.Parameter(init.clone())
        self.trend = bool(trend)
        if self.trend:  # only then: a model without a trend keeps its state dict (and old files load)
            self.beta_logit = nn.Parameter(torch.full((n_series,), -2.0))  # beta 0.12: the trend moves slowly
            self.phi_logit = nn.Parameter(torch.full((n_series,), 1.5))  # phi 0.82: Φ_k levels off near 4.5
        if dilations is None:
            self.rnn = recurrent_layer(cell, input_length, hidden_size, num_layers)
        else:  # its own state dict keys (rnn.blocks.K.J.*): the config says which to build
            self.rnn = DilatedStack(cell, input_length, hidden_size, dilations)
        self.head = nn.Sequential(nn.Linear(hidden_size + input_length, hidden_size), nn.Tanh(),
                                  nn.Linear(hidden_size, horizon * n_quantiles))

    def smoothing(self, idx, log_s0, seasonal=None):
        """alpha (B,), gamma (B,), log initial seasons (B, m): learned rows, or the means and ``log_s0`` for −1.
        With per-series flags (``self.seasonal``), a row flagged False, or a −1 row whose ``seasonal`` (B,) bool
        is False (None: True), gets gamma 0 and log seasons 0: a flat season of ones that never moves."""
        known = idx >= 0
        rows = idx.clamp(min=0)
        alpha = torch.where(known, self.alpha_logit[rows], self.alpha_logit.mean()).sigmoid()
        gamma = torch.where(known, self.gamma_logit[rows], self.gamma_logit.mean()).sigmoid()
        s0 = torch.where(known[:, None], self.log_s0[rows], log_s0)
        if self.seasonal is not None:
            other = torch.ones_like(known) if seasonal is None else seasonal.to(known.device, torch.bool)
            flag = torch.where(known, self.seasonal.to(known.device)[rows], other)  # (B,)
            gamma = torch.where(flag, gamma, torch.zeros_like(gamma))
            s0 = torch.where(flag[:, None], s0, torch.zeros_like(s0))
        return alpha, gamma, s0

    def damping(self, idx):
        """(beta (B,), phi (B,)) of the damped trend: learned rows, the mean logits for −1; None without a trend."""
        if not self.trend:
            return None
        known = idx >= 0
        rows = idx.clamp(min=0)
        beta = torch.where(known, self.beta_logit[rows], self.beta_logit.mean()).sigmoid()
        phi = torch.where(known, self.phi_logit[rows], self.phi_logit.mean()).sigmoid()
        return beta, phi

    def holt_winters(self, y, n, alpha, gamma, log_s0, damped=None):
        """Levels (B, T), seasonal indices (B, T + m) and log trends b (B, T) (None unless ``damped`` = (beta,
        phi), each (B,)) of y (B, T); positions t >= n keep the last state."""
        B, T = y.shape
        m = self.season
        seas = list((log_s0 - log_s0.mean(1, keepdim=True)).exp().unbind(1))  # s_0 .. s_{m-1}, mean log 0
        levels, trends = [], []
        level = y[:, 0] / seas[0]
        b = None if damped is None else torch.zeros_like(level)
        for t in range(T):
            live = t < n  # (B,) bool
            s_t = seas[t]
            if t > 0 and damped is None:
                level = torch.where(live, alpha * y[:, t] / s_t + (1 - alpha) * level, level)
            elif t > 0:
                beta, phi = damped
                new = alpha * y[:, t] / s_t + (1 - alpha) * level * (phi * b).exp()
                b = torch.where(live, beta * (new.log() - level.log()) + (1 - beta) * phi * b, b)  # old level
                level = torch.where(live, new, level)
            levels.append(level)
            if b is not None:
                trends.append(b)
            if m > 1:
                seas.append(torch.where(live, gamma * y[:, t] / level + (1 - gamma) * s_t, s_t))
            else:
                seas.append(s_t)
        return torch.stack(levels, 1), torch.stack(seas, 1), torch.stack(trends, 1) if trends else None

    def normalise(self, y, levels, seas, trends=None, phi=None):
        """Inputs (B, T, L) and targets (B, T, H), both log(y / (level_t · season)) at every origin t, and the
        log seasonal indices ŝ over the horizon (B, T, H). With log trends (B, T) and their damping phi (B,),
        the targets' level is l_t·exp(Φ_k·b_t) and the third output log ŝ + Φ_k·b_t (what a forecast adds back
        besides log l_t)."""
        B, T = y.shape
        L, H, m = self.input_length, self.horizon, self.season
        log_level = levels.log()
        des = y.log() - seas[:, :T].log()  # (B, T) deseasonalised log values
        padded = torch.cat([des[:, :1].expand(B, L - 1), des], 1)  # edge padding for origins t < L − 1
        inputs = padded.unfold(1, L, 1) - log_level[:, :, None]  # (B, T, L)
        log_y = y.log()
        ahead = torch.cat([log_y[:, 1:], log_y[:, -1:].expand(B, H)], 1).unfold(1, H, 1)  # (B, T, H) y_{t+1..t+H}
        # ŝ_{t+k} = s_{t+1+((k-1) mod m)}: the m indices after t (all known at t), repeated over the horizon;
        # unfold and repeat rather than a gather, whose backward (an index_put) is slow on the CPU
        known = seas[:, 1:].log().unfold(1, m, 1)  # (B, T, m)
        log_seas = known.repeat(1, 1, -(-H // m))[:, :, :H]  # (B, T, H)
        if trends is not None:
            k = torch.arange(1, H + 1, device=y.device, dtype=y.dtype)
            growth = torch.cumsum(phi[:, None] ** k, 1)  # (B, H) Φ_k = phi + ... + phi^k
            log_seas = log_seas + trends[:, :, None] * growth[:, None, :]  # (B, T, H)
        target = ahead - log_seas - log_level[:, :, None]  # past the series' end: masked by the loss
        return inputs, target, log_seas

    def windows(self, idx, y, n, log_s0, seasonal=None):
        """The smoothing run over y: (inputs (B, T, L), targets (B, T, H), levels (B, T), log offsets (B, T, H))
        as ``normalise`` gives them (arguments as ``forward``'s)."""
        alpha, gamma, s0 = self.smoothing(idx, log_s0, seasonal)
        damped = self.damping(idx)
        levels, seas, trends = self.holt_winters(y, n, alpha, gamma, s0, damped)
        inputs, target, log_seas = self.normalise(y, levels, seas, trends, None if damped is None else damped[1])
        return inputs, target, levels, log_seas

    def forward(self, idx, y, n, log_s0, seasonal=None):
        inputs, target, levels, log_seas = self.windows(idx, y, n, log_s0, seasonal)
        out, _ = self.rnn(inputs)  # (B, T, hidden)
        pred = self.head(torch.cat([out, inputs], -1)).view(*inputs.shape[:2], self.horizon, self.n_quantiles)
        return pred, target, levels.log(), log_seas


def level_wiggliness(log_level, mask):
    """Mean squared second difference of log levels (B, T) where ``mask`` (B, T) holds at all three points."""
    return level_wiggliness_term(log_level, mask).mean


def level_wiggliness_term(log_level, mask):
    """``level_wiggliness`` as a WeightedMean: the mean and the number of points it averages (its weight)."""
    from ..training import WeightedMean

    if log_level.shape[1] < 3:
        return WeightedMean(log_level.sum() * 0, 0.0)
    d2 = log_level[:, 2:] - 2 * log_level[:, 1:-1] + log_level[:, :-2]
    ok = (mask[:, 2:] & mask[:, :-2]).float()
    count = ok.sum()
    return WeightedMean((d2 ** 2 * ok).sum() / count.clamp(min=1), count)


def inverse_scales(ys: list, m: int) -> np.ndarray:
    """(S,) float32: 1 / MASE's scale (mean |y_t − y_{t−m}|) of each history; a series whose scale is 0 or
    undefined (constant, or too short) gets the median of the others' (all ones when none has a scale)."""
    from .metrics import mase_scale

    inv = 1.0 / np.array([mase_scale(y, m) for y in ys])
    ok = np.isfinite(inv)
    fill = float(np.median(inv[ok])) if ok.any() else 1.0
    return np.where(ok, inv, fill).astype(np.float32)


def esrnn_loss(model, quantiles, penalty: float, idx, y, n, lo, hi, log_s0, inv_scale=None):
    """Pinball loss of the log-normalised quantiles over origins lo <= t <= hi (B,) (their targets all observed),
    plus ``penalty`` × the level wiggliness while training. ``inv_scale`` (B,): weigh origin t of series i by
    l_t / scale_i, so a log error e, an absolute error of about l_t·e, counts as its share of MASE (the mean over
    series of MAE / scale); None weighs every origin alike (a relative error, as sMAPE)."""
    from ..training import sum_terms

    return sum_terms(esrnn_loss_terms(model, quantiles, penalty, idx, y, n, lo, hi, log_s0, inv_scale))


def esrnn_loss_terms(model, quantiles, penalty: float, idx, y, n, lo, hi, log_s0, inv_scale=None) -> list:
    """``esrnn_loss`` as its weighted means (``lstmkit.tasks.training.WeightedMean``): the pinball loss weighed
    over the origins used (weight: the weights' total) and, while training with a ``penalty``, the penalty (weight:
    the points its mean runs over). What ``fit`` trains on: under DDP a rank's weighted mean is not its share of
    the batch's, so the loop all-reduces the weights and N processes train the same steps as one."""
    from ..training import WeightedMean

    pred, target, log_level, _ = model(idx, y, n, log_s0)
    T = y.shape[1]
    t = torch.arange(T, device=y.device)[None, :]
    use = (t >= lo[:, None]) & (t <= hi[:, None])  # (B, T)
    err = target.unsqueeze(-1) - pred  # (B, T, H, Q)
    pin = torch.maximum(quantiles * err, (quantiles - 1) * err).mean((2, 3))  # (B, T)
    w = use.float()
    if inv_scale is not None:  # levels detached: the weights say what matters, not a way to shrink the loss
        w = w * log_level.detach().exp() * inv_scale[:, None]
    total = w.sum()
    terms = [WeightedMean((pin * w).sum() / total.clamp(min=1e-12), total)]  # 0 when no origin is used
    if penalty and model.training:
        wiggle = level_wiggliness_term(log_level, t < n[:, None])
        terms.append(WeightedMean(penalty * wiggle.mean, wiggle.weight))
    return terms


def history_flags(model, idx, ys: list):
    """(S,) bool tensor: the seasonality test of each history without a row (idx −1; rows keep their training
    flag), or None when ``model`` has no flags (every series seasonal)."""
    if model.seasonal is None:
        return None
    from .baselines import seasonality_test

    return torch.tensor([bool(i >= 0) or seasonality_test(h, model.season) for i, h in zip(idx, ys)])


def pad_panel(ys: list) -> tuple[np.ndarray, np.ndarray]:
    """Histories [y (n_i,)] -> (y (S, max n) float32 padded with ones, n (S,) int64)."""
    n = np.array([len(y) for y in ys], np.int64)
    out = np.ones((len(ys), int(n.max())), np.float32)
    for i, y in enumerate(ys):
        out[i, :len(y)] = y
    return out, n


def forecast(model, idx: np.ndarray, ys: list, shifts: np.ndarray, device) -> np.ndarray:
    """Quantile forecasts (S, H, Q) from the end of each history ys[i] (series row idx[i], −1 for none), each
    computed on ys[i] + shifts[i] (all positive) and shifted back."""
    ys = [np.asarray(y, np.float64) + d for y, d in zip(ys, shifts)]
    y, n = pad_panel(ys)
    m = model.season
    s0 = np.stack([initial_log_seasons(h, m) for h in ys]).astype(np.float32)
    args = [torch.from_numpy(a).to(device) for a in (np.asarray(idx, np.int64), y, n, s0)]
    model.eval()
    with torch.no_grad():
        pred, _, log_level, log_seas = model(*args, seasonal=history_flags(model, idx, ys))
    last = torch.as_tensor(n - 1, device=device)
    rows = torch.arange(len(ys), device=device)
    z = pred[rows, last] + log_level[rows, last][:, None, None] + log_seas[rows, last][:, :, None]  # (S, H, Q)
    return z.exp().cpu().numpy().astype(np.float64) - np.asarray(shifts, np.float64)[:, None, None]
