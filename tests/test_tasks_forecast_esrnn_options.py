"""ES-RNN options for M1 monthly (issue 21): the seasonality test that decides which series get seasonal indices
(``seasonality='tested'``), snapshot ensembles over the last epochs (``snapshots``) and a damped trend in the
smoothing (``trend='damped'``), each checked against its definition, saved and loaded with the model, and refused by
name on bad input."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("safetensors")
pytest.importorskip("statsmodels")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.forecast import Forecaster  # noqa: E402
from lstmkit.tasks.forecast.baselines import seasonality_test  # noqa: E402
from lstmkit.tasks.forecast.esrnn import ESRNN, esrnn_loss, forecast, history_flags  # noqa: E402
from lstmkit.tasks.training import TrainConfig, fit, seed_everything  # noqa: E402

from test_tasks_forecast_esrnn import RTOL, _model_and_batch, holt_winters64, seasonal_panel, small  # noqa: E402


def m4_margin(y, m):
    """|r_m| − 1.645·sqrt((1 + 2·Σ_{k<m} r_k²) / n) with a plain numpy autocorrelation (the M4 benchmarks'
    formula, written out independently of statsmodels): positive means seasonal."""
    d = np.asarray(y, np.float64) - np.mean(y)
    r = np.array([np.dot(d[:len(d) - k], d[k:]) for k in range(m + 1)]) / np.dot(d, d)
    return abs(r[m]) - 1.645 * np.sqrt((1 + 2 * np.sum(r[1:m] ** 2)) / len(y))


def test_seasonality_test_is_the_m4_rule():
    rng = np.random.default_rng(0)
    m, checked = 12, 0
    t = np.arange(72)
    for k in range(40):
        amp = [0.0, 0.05, 0.2, 0.5][k % 4]
        y = 100 + np.cumsum(rng.standard_normal(72)) * (k % 3) + 10 * amp * np.sin(2 * np.pi * t / m) + \
            rng.standard_normal(72)
        margin = m4_margin(y, m)
        if abs(margin) > 1e-9:  # float64 autocorrelations agree to ~1e-15; stay clear of the boundary itself
            assert seasonality_test(y, m) == (margin > 0), (k, margin)
            checked += 1
        assert seasonality_test(3 * y + 50, m) == seasonality_test(y, m)  # shift and scale leave r_k alone
    assert checked == 40
    verdicts = [seasonality_test(100 + 10 * a * np.sin(2 * np.pi * t / m) + rng.standard_normal(72), m)
                for a in (0.0, 1.0)]
    assert verdicts == [False, True]  # noise alone: |r_12| ~ 0.1 < 0.19; a 10-to-1 season: r_12 ~ 0.8
    seasonal = 100 + 10 * np.sin(2 * np.pi * t / m)
    assert seasonality_test(seasonal, m) and not seasonality_test(seasonal[:35], m)  # under 3m values: no test
    assert not seasonality_test(np.full(72, 5.0), m) and not seasonality_test(seasonal, 1)


def test_unseasonal_rows_get_a_flat_season_and_no_seasonal_gradient():
    m = 4
    model, idx, y, n = _model_and_batch(m=m)  # idx rows 3, 0, 4 of 5
    flagged = ESRNN(5, m, input_length=6, horizon=6, n_quantiles=3, hidden_size=8,
                    seasonal=[True, False, True, False, True])
    flagged.load_state_dict(model.state_dict())
    s0 = torch.zeros(3, m)
    with torch.no_grad():
        alpha, gamma, log_s0 = flagged.smoothing(idx, s0)
        levels, seas, _ = flagged.holt_winters(y, n, alpha, gamma, log_s0)
    assert float(gamma[0]) == 0 and torch.all(seas[0] == 1)  # gamma 0: s_{t+m} = 0·y/l + 1·s_t = 1 exactly
    k = int(n[0])
    ref_l, _ = holt_winters64(y[0, :k].double().numpy(), float(alpha[0]), 0.0, np.zeros(m))
    np.testing.assert_allclose(levels[0, :k].detach().numpy(), ref_l, rtol=RTOL)  # simple exponential smoothing
    plain = model(idx, y, n, s0)
    got = flagged(idx, y, n, s0)
    for a, b in zip(plain, got):  # the seasonal rows are the model without flags, bit for bit
        assert torch.equal(a[1:], b[1:])
    assert not torch.allclose(plain[0][0], got[0][0])
    q = torch.tensor([0.1, 0.5, 0.9])
    flagged.train()
    esrnn_loss(flagged, q, 1.0, idx, y, n, torch.zeros(3, dtype=torch.long), n - 7, s0).backward()
    assert float(flagged.gamma_logit.grad[3]) == 0 and torch.all(flagged.log_s0.grad[3] == 0)
    assert float(flagged.alpha_logit.grad[3]) != 0 and float(flagged.gamma_logit.grad[0]) != 0
    # rows without a training series (−1) follow the flag passed in; none passed: seasonal
    none = torch.full((3,), -1)
    g_off = flagged.smoothing(none, s0 + 0.3, torch.tensor([False, True, False]))[1]
    g_on = flagged.smoothing(none, s0 + 0.3)[1]
    assert g_off[0] == 0 and g_off[2] == 0 and g_off[1] == g_on[1] > 0 and torch.all(g_on > 0)


def mixed_panel(n=48):
    """seasonal_panel's 4 seasonal series and 2 of noise around a level (no season)."""
    rng = np.random.default_rng(3)
    flat = [pd.DataFrame({"unique_id": f"f{k}", "ds": np.arange(n), "y": 100 + 3 * rng.standard_normal(n)})
            for k in range(2)]
    return pd.concat([seasonal_panel(n_series=4, n=n), *flat], ignore_index=True)


def test_seasonality_tested_flags_each_series_and_survives_save_load(tmp_path):
    df = mixed_panel()
    ys = {u: g.y.to_numpy() for u, g in df.groupby("unique_id")}  # the Forecaster's order: sorted ids
    want = [seasonality_test(y, 4) for y in ys.values()]
    assert want == [False] * 2 + [True] * 4
    fc = small(seasonality="tested").fit(df)
    assert fc.config["series_ids"] == list(ys)
    assert fc.config["seasonality"] == "tested" and fc.config["series_seasonal"] == want
    assert fc.models[0].seasonal.tolist() == want
    path = str(tmp_path / "m.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.models[0].seasonal.tolist() == want
    np.testing.assert_array_equal(back.predict()["yhat"], fc.predict()["yhat"])
    # a history with no training row is tested itself: a flat one gets no season, a seasonal one does
    hist = [ys["f0"] * 2, ys["s0"] * 2]
    flags = history_flags(fc.models[0], np.array([-1, -1]), hist)
    assert flags.tolist() == [False, True]
    default = small().fit(df)
    assert default.models[0].seasonal is None and "series_seasonal" not in default.config
    assert history_flags(default.models[0], np.array([-1]), hist[:1]) is None
    # the flag reaches the forecast: the flat history forecast with a season differs from without
    model = fc.models[0]
    on = forecast(model, np.array([-1]), hist[:1], np.zeros(1), "cpu")
    model.seasonal = None
    off = forecast(model, np.array([-1]), hist[:1], np.zeros(1), "cpu")
    assert not np.allclose(on, off)


def _linear_problem():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(64, generator=g)
    return (x[:48], y[:48]), (x[48:], y[48:])


def _fit_linear(epochs, snapshots=1, ckpt_dir=None, patience=100):
    seed_everything(0)
    model = torch.nn.Linear(3, 1)
    train, val = _linear_problem()
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, patience=patience, progress=False)

    def loss(mdl, x, y):
        return torch.nn.functional.mse_loss(mdl(x)[:, 0], y)

    return model, fit(model, loss, train, val, cfg, task="test", config={}, ckpt_dir=ckpt_dir, log=lambda *_: None,
                      snapshots=snapshots)


def test_fit_snapshots_are_the_epochs_before_the_kept_one(tmp_path):
    model, res = _fit_linear(6, snapshots=3)
    best = res["best_epoch"]
    assert best == 6 and len(res["snapshots"]) == 2  # a convex problem at a small rate: every epoch improves
    for state, epoch in zip(res["snapshots"], (best - 2, best - 1)):
        d = str(tmp_path / f"e{epoch}")
        _fit_linear(epoch, ckpt_dir=d)  # the same seed and batches: the same trajectory up to ``epoch``
        from lstmkit.tasks import checkpoint

        last = checkpoint.load(os.path.join(d, "last.safetensors"))["model"]
        for k, v in state.items():
            assert torch.equal(v, last[k]), (epoch, k)
    assert "snapshots" not in _fit_linear(2)[1]
    assert len(_fit_linear(1, snapshots=3)[1]["snapshots"]) == 0  # no epoch before the first
    with pytest.raises(ValueError, match="snapshots: expected an integer >= 1, got 0"):
        _fit_linear(1, snapshots=0)


def test_snapshot_ensemble_averages_the_last_epochs_and_survives_save_load(tmp_path):
    df = seasonal_panel(n_series=4, n=30)
    fc = small(snapshots=3, epochs=4, lr=1e-2).fit(df)
    h = fc.history_[0]
    assert h["best_epoch"] == len(h["refit"]["history"]) >= 3 and fc.config["member_snapshots"] == [3]
    json.dumps(fc.history_)  # the state dicts left the history
    group = fc._snapshot_group(0)
    ys = {u: g.y.to_numpy() for u, g in df.groupby("unique_id", sort=False)}
    rows = np.arange(4)
    each = [forecast(g, rows, list(ys.values()), np.zeros(4), "cpu") for g in group]
    assert not np.allclose(each[0], each[-1])  # the epochs differ, so the mean is not one of them
    got = fc.predict_arrays(ys, members=True)[0]
    np.testing.assert_allclose(got, np.mean(each, axis=0), rtol=1e-12)
    path = str(tmp_path / "m.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert [len(g) for g in back.snapshots_] == [2]
    np.testing.assert_array_equal(back.predict_arrays(ys, members=True), fc.predict_arrays(ys, members=True))


@pytest.mark.parametrize("kw, message", [
    (dict(seasonality="yes"), "seasonality: expected one of 'all', 'tested', got 'yes'"),
    (dict(model="lstm", seasonality="tested"), "seasonality: only model='esrnn'"),
    (dict(snapshots=0), "snapshots: expected an integer >= 1 .*got 0"),
    (dict(snapshots=2.5), "snapshots: expected an integer >= 1 .*got 2.5"),
    (dict(snapshots=True), "snapshots: expected an integer >= 1 .*got True"),
    (dict(model="lstm", snapshots=2), "snapshots: only model='esrnn'"),
])
def test_bad_option_values_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        small(**kw)


def test_cli_seasonality_and_snapshots(tmp_path, capsys):
    csv = tmp_path / "tiny.csv"
    mixed_panel(n=28).to_csv(csv, index=False)
    tiny = ["--csv", str(csv), "--horizon", "4", "--season-length", "4", "--epochs", "2", "--batches-per-epoch",
            "2", "--hidden-size", "8", "--no-progress", "--baselines", ""]
    out = str(tmp_path / "run")
    assert main(["forecast", *tiny, "--model", "esrnn", "--seasonality", "tested", "--snapshots", "2",
                 "--trend", "damped", "--out", out]) == 0
    config = Forecaster.load(os.path.join(out, "model.safetensors")).config
    assert config["seasonality"] == "tested" and config["snapshots"] == 2 and len(config["series_seasonal"]) == 6
    assert config["trend"] == "damped"
    capsys.readouterr()
    for flag in (["--seasonality", "tested"], ["--snapshots", "2"], ["--trend", "damped"]):
        assert main(["forecast", *tiny, "--model", "lstm", *flag, "--out", str(tmp_path / "bad")]) != 0
        assert f"{flag[0]}: only --model esrnn" in capsys.readouterr().err


def damped_holt_winters64(y, alpha, gamma, s0, beta, phi):
    """esrnn.py's damped-trend recursion in float64, one series: levels (n,), seasonal indices (n + m,), log
    trends (n,)."""
    m = len(s0)
    s = list(np.exp(s0 - s0.mean()))
    levels, trends = [], []
    level, b = y[0] / s[0], 0.0
    for t in range(len(y)):
        if t > 0:
            new = alpha * y[t] / s[t] + (1 - alpha) * level * np.exp(phi * b)
            b = beta * (np.log(new) - np.log(level)) + (1 - beta) * phi * b
            level = new
        levels.append(level)
        trends.append(b)
        s.append(gamma * y[t] / level + (1 - gamma) * s[t] if m > 1 else s[t])
    return np.array(levels), np.array(s), np.array(trends)


def _damped_model(m=4):
    model, idx, y, n = _model_and_batch(m=m)
    damped = ESRNN(5, m, input_length=6, horizon=6, n_quantiles=3, hidden_size=8, trend=True)
    state = model.state_dict()
    state.update(beta_logit=torch.randn(5), phi_logit=torch.randn(5) + 1.0)
    damped.load_state_dict(state)
    return model, damped, idx, y, n


@pytest.mark.parametrize("m", [1, 4])
def test_damped_trend_matches_a_float64_recursion_and_offsets_the_targets(m):
    model, damped, idx, y, n = _damped_model(m)
    assert "beta_logit" not in model.state_dict()  # without a trend the state dict is as before
    s0 = torch.zeros(3, m)
    with torch.no_grad():
        alpha, gamma, log_s0 = damped.smoothing(idx, s0)
        beta, phi = damped.damping(idx)
        levels, seas, trends = damped.holt_winters(y, n, alpha, gamma, log_s0, (beta, phi))
        _, target, log_off = damped.normalise(y, levels, seas, trends, phi)
        _, target0, log_seas = damped.normalise(y, levels, seas)
    for i in range(3):
        k = int(n[i])
        ref = damped_holt_winters64(y[i, :k].double().numpy(), float(alpha[i]), float(gamma[i]),
                                    log_s0[i].double().numpy(), float(beta[i]), float(phi[i]))
        np.testing.assert_allclose(levels[i, :k].numpy(), ref[0], rtol=RTOL)
        np.testing.assert_allclose(seas[i, :k + m].numpy(), ref[1], rtol=RTOL)
        # b is a difference of logs of order 0.1-1: float32 leaves an absolute error of a few 1e-7 per step
        np.testing.assert_allclose(trends[i, :k].numpy(), ref[2], rtol=RTOL, atol=1e-5)
        assert torch.all(trends[i, k:] == trends[i, k - 1]) and torch.all(levels[i, k:] == levels[i, k - 1])
    # the horizon's log level grows by Φ_k·b_t, Φ_k = phi(1 − phi^k)/(1 − phi) (a geometric sum)
    H = 6
    p = phi.double().numpy()[:, None]
    growth = p * (1 - p ** np.arange(1, H + 1)) / (1 - p)  # (B, H)
    want = trends.double().numpy()[:, :, None] * growth[:, None, :]
    np.testing.assert_allclose((log_off - log_seas).double().numpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose((target0 - target).numpy(), (log_off - log_seas).numpy(), rtol=1e-5, atol=1e-6)


def test_damped_trend_parameters_learn_per_series():
    _, damped, idx, y, n = _damped_model()
    damped.train()
    q = torch.tensor([0.1, 0.5, 0.9])
    esrnn_loss(damped, q, 1.0, idx, y, n, torch.zeros(3, dtype=torch.long), n - 7, torch.zeros(3, 4)).backward()
    for p in (damped.beta_logit, damped.phi_logit):
        assert torch.all(p.grad[[3, 0, 4]] != 0) and torch.all(p.grad[[1, 2]] == 0)


def test_damped_trend_forecaster_saves_loads_and_refuses_bad_values(tmp_path):
    df = seasonal_panel(n_series=4, n=30)
    fc = small(trend="damped").fit(df)
    assert fc.config["trend"] == "damped" and fc.models[0].trend
    path = str(tmp_path / "m.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.models[0].trend
    np.testing.assert_array_equal(back.predict()["yhat"], fc.predict()["yhat"])
    assert "trend" not in small().config and not small().fit(df).models[0].trend
    with pytest.raises(ValueError, match="trend: expected one of 'none', 'damped', got 'linear'"):
        small(trend="linear")
    with pytest.raises(ValueError, match="trend: only model='esrnn'"):
        small(model="lstm", trend="damped")
