"""ES-RNN (Forecaster(model='esrnn')): the Holt-Winters normalisation against a float64 recursion and round-tripped,
gradients reaching each series' smoothing parameters, a seasonal panel where it beats naive, save/load, other
histories, the CLI, and bad arguments refused by name."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("safetensors")

from lstmkit.cli import main  # noqa: E402
from lstmkit.tasks.forecast import Forecaster  # noqa: E402
from lstmkit.tasks.forecast.esrnn import ESRNN, esrnn_loss, initial_log_seasons, inverse_scales, shift_of  # noqa: E402

# float32 arithmetic on values of order 1: a log or a ratio is off by a few ulps (1.2e-7) per operation, and the
# recursion below compounds at most a few dozen of them: 1e-5 relative holds with a wide margin
RTOL = 1e-5


def holt_winters64(y, alpha, gamma, s0):
    """The recursion of the module docstring in float64, one series: levels (n,), seasonal indices (n + m,)."""
    m = len(s0)
    s = list(np.exp(s0 - s0.mean()))
    levels = []
    level = y[0] / s[0]
    for t in range(len(y)):
        if t > 0:
            level = alpha * y[t] / s[t] + (1 - alpha) * level
        levels.append(level)
        s.append(gamma * y[t] / level + (1 - gamma) * s[t] if m > 1 else s[t])
    return np.array(levels), np.array(s)


def seasonal_panel(n_series=12, n=48, m=4, seed=0):
    """Positive series with a multiplicative season of ``m``, a slow trend and 2% noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_series):
        t = np.arange(n)
        season = 1 + 0.3 * np.sin(2 * np.pi * (t + k) / m)
        y = (100 + 10 * k) * (1 + 0.005 * t) * season * (1 + 0.02 * rng.standard_normal(n))
        rows.append(pd.DataFrame({"unique_id": f"s{k}", "ds": t, "y": y}))
    return pd.concat(rows, ignore_index=True)


def small(**kw):
    return Forecaster(**{"horizon": 4, "season_length": 4, "model": "esrnn", "hidden_size": 8, "epochs": 2,
                         "batches_per_epoch": 2, **kw})


def _model_and_batch(m=4, T=30, lengths=(30, 22, 15)):
    torch.manual_seed(0)
    B = len(lengths)
    model = ESRNN(5, m, input_length=6, horizon=6, n_quantiles=3, hidden_size=8)
    with torch.no_grad():
        model.alpha_logit.copy_(torch.randn(5))
        model.gamma_logit.copy_(torch.randn(5))
        model.log_s0.copy_(0.2 * torch.randn(5, m))
    y = torch.rand(B, T) + 0.5
    n = torch.tensor(lengths)
    for i, k in enumerate(lengths):
        y[i, k:] = 1.0  # pad_panel's padding
    return model, torch.tensor([3, 0, 4]), y, n


@pytest.mark.parametrize("m", [1, 4, 12])
def test_holt_winters_matches_a_float64_recursion_and_masks_past_the_end(m):
    model, idx, y, n = _model_and_batch(m=m)
    alpha, gamma, s0 = model.smoothing(idx, torch.zeros(3, m))
    levels, seas, _ = model.holt_winters(y, n, alpha, gamma, s0)
    for i in range(3):
        k = int(n[i])
        ref_l, ref_s = holt_winters64(y[i, :k].double().numpy(), float(alpha[i].detach()), float(gamma[i].detach()),
                                      s0[i].double().detach().numpy())
        np.testing.assert_allclose(levels[i, :k].detach().numpy(), ref_l, rtol=RTOL)
        np.testing.assert_allclose(seas[i, :k + m].detach().numpy(), ref_s, rtol=RTOL)
        assert torch.all(levels[i, k:] == levels[i, k - 1])  # padding changes nothing


def test_deseasonalise_then_reseasonalise_gives_back_the_series():
    m, H, L = 4, 6, 6
    model, idx, y, n = _model_and_batch(m=m)
    alpha, gamma, s0 = model.smoothing(idx, torch.zeros(3, m))
    levels, seas, _ = model.holt_winters(y, n, alpha, gamma, s0)
    inputs, target, log_seas = model.normalise(y, levels, seas)
    T = y.shape[1]
    # the window's last value: log(y_t / s_t) − log l_t, so y_t = exp(x + log l_t) · s_t
    back = torch.exp(inputs[:, :, -1] + levels.log()) * seas[:, :T]
    np.testing.assert_allclose(back.detach().numpy(), y.numpy(), rtol=RTOL)
    # a whole window, lag j: y_{t−j} = exp(x + log l_t) · s_{t−j}
    t = 20
    window = torch.exp(inputs[:, t] + levels[:, t:t + 1].log()) * seas[:, t - L + 1:t + 1]
    np.testing.assert_allclose(window.detach().numpy(), y[:, t - L + 1:t + 1].numpy(), rtol=RTOL)
    # targets: y_{t+k} = exp(target + log l_t + log ŝ_{t+k}), ŝ the last m indices known at t, repeated
    back = torch.exp(target + levels.log()[:, :, None] + log_seas)
    for k in range(1, H + 1):
        np.testing.assert_allclose(back[:, :T - k, k - 1].detach().numpy(), y[:, k:].numpy(), rtol=RTOL)
        s_hat = seas[:, 1 + (k - 1) % m:1 + (k - 1) % m + T - k]
        np.testing.assert_allclose(log_seas[:, :T - k, k - 1].exp().detach().numpy(), s_hat.detach().numpy(),
                                   rtol=RTOL)


def test_gradients_reach_each_series_smoothing_parameters_and_no_other():
    model, idx, y, n = _model_and_batch()
    q = torch.tensor([0.1, 0.5, 0.9])
    model.train()
    loss = esrnn_loss(model, q, 1.0, idx, y, n, torch.zeros(3, dtype=torch.long), n - 7, torch.zeros(3, 4))
    loss.backward()
    for p in (model.alpha_logit, model.gamma_logit, model.log_s0):
        g = p.grad.reshape(5, -1).abs().sum(1)
        assert torch.all(g[[3, 0, 4]] > 0) and torch.all(g[[1, 2]] == 0)


def test_mase_weights_weigh_each_origin_by_level_over_scale():
    model, idx, y, n = _model_and_batch()
    q = torch.tensor([0.1, 0.5, 0.9])
    lo, hi, s0 = torch.zeros(3, dtype=torch.long), n - 7, torch.zeros(3, 4)
    inv = torch.tensor([2.0, 0.5, 1.0])
    model.eval()  # no level penalty: the loss is the weighted pinball alone
    got = float(esrnn_loss(model, q, 0.0, idx, y, n, lo, hi, s0, inv).detach())
    pred, target, log_level, _ = model(idx, y, n, s0)
    p, tg, ll = pred.double().detach(), target.double().detach(), log_level.double().detach()
    err = tg.unsqueeze(-1) - p
    pin = torch.maximum(q.double() * err, (q.double() - 1) * err).mean((2, 3))  # (B, T)
    t = torch.arange(y.shape[1])[None]
    w = ((t >= lo[:, None]) & (t <= hi[:, None])).double() * ll.exp() * inv.double()[:, None]
    want = float((pin * w).sum() / w.sum())
    # float32 sums of ~60 positive terms of order 1: relative error well under 1e-5
    assert got == pytest.approx(want, rel=RTOL)
    plain = float(esrnn_loss(model, q, 0.0, idx, y, n, lo, hi, s0).detach())
    assert abs(plain - want) > 100 * RTOL * want  # the weights changed which errors count


def test_mase_weights_reach_every_training_tuple():
    from lstmkit.tasks.forecast import panel

    df = seasonal_panel(n_series=3, n=30)
    series = panel.split_series(df, panel.Columns())
    for weights, size in (("none", 6), ("mase", 7)):
        train, val, full, _ = small(loss_weights=weights)._esrnn_panel(series)
        assert len(train) == len(val) == len(full) == size
    # the scales come from the values before the validation window (the last H = 4 dropped)
    want = inverse_scales([s.y[:-4] for s in series.values()], 4)
    np.testing.assert_array_equal(train[-1].numpy(), want)


def test_inverse_scales():
    m = 4
    a = np.tile([1.0, 2.0, 4.0, 1.0], 3) + np.arange(12)  # y_t − y_{t−4} = 4 everywhere
    const = np.full(12, 5.0)  # scale 0: undefined
    np.testing.assert_allclose(inverse_scales([a, 2 * a, const], m), [0.25, 0.125, 0.1875], rtol=1e-7)
    np.testing.assert_array_equal(inverse_scales([const], m), [1.0])


def test_initial_seasons_and_shift():
    y = np.tile([1.0, 2.0, 4.0, 1.0], 3) * 10
    s0 = initial_log_seasons(y, 4)
    np.testing.assert_allclose(np.exp(s0), [1, 2, 4, 1] / np.exp(np.log([1, 2, 4, 1]).mean()), rtol=1e-12)
    assert np.all(initial_log_seasons(y[:3], 4) == 0) and shift_of(y) == 0
    z = np.array([0.0, 2.0, 4.0])
    assert shift_of(z) == pytest.approx(0.2) and np.all(z + shift_of(z) > 0)


def test_esrnn_beats_naive_on_a_seasonal_panel():
    df = seasonal_panel()
    H = 4
    train = df.groupby("unique_id").head(44)
    test = df.groupby("unique_id").tail(H)
    fc = small(hidden_size=16, epochs=8, batches_per_epoch=4, batch_size=12, lr=5e-3).fit(train)
    pred = fc.predict().merge(test, on=["unique_id", "ds"])
    last = train.groupby("unique_id")["y"].last()
    naive = pred["unique_id"].map(last)
    err_es = np.abs(pred["yhat"] - pred["y"]).mean()
    err_naive = np.abs(naive - pred["y"]).mean()
    # the season swings ±30% and the noise is 2%: anything that learned the season is far below naive
    assert err_es < 0.5 * err_naive, (err_es, err_naive)


def test_save_load_gives_the_same_forecasts_and_other_histories(tmp_path):
    df = seasonal_panel(n_series=4, n=30)
    fc = small(ensemble=2).fit(df)
    path = str(tmp_path / "m.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.config["model"] == "esrnn"
    np.testing.assert_allclose(back.predict()["yhat"], fc.predict()["yhat"], rtol=1e-6)
    # other histories: a truncated history of a known series keeps its parameters; a new id or a history that
    # no longer starts where training's did uses the mean smoothing and its own seasons
    series = {u: g.y.to_numpy() for u, g in df.groupby("unique_id")}
    from lstmkit.tasks.forecast import panel

    def hist(uid, y):
        return panel.Series(uid, y, np.zeros((len(y), 0)), np.zeros(0), len(y) - 1, 1)

    rows = fc._esrnn_rows([hist("s1", series["s1"][:20]), hist("s1", series["s1"][4:]), hist("new", series["s2"])])
    assert list(rows) == [1, -1, -1]
    other = pd.DataFrame({"unique_id": "new", "ds": np.arange(20), "y": series["s2"][:20]})
    pred = back.predict(other)
    assert len(pred) == 4 and np.all(np.isfinite(pred["yhat"])) and np.all(pred["q0.1"] <= pred["q0.9"])


@pytest.mark.parametrize("model", ["esrnn", "lstm"])
def test_refit_trains_a_fresh_model_for_the_best_epoch_count_on_every_window(model, tmp_path):
    df = seasonal_panel(n_series=4, n=30)
    fc = small(model=model, epochs=3, refit=True).fit(df, ckpt_dir=str(tmp_path))
    h = fc.history_[0]
    assert len(h["refit"]["history"]) == h["best_epoch"] >= 1
    assert os.path.isfile(tmp_path / "member-0" / "refit" / "last.safetensors")
    plain = small(model=model, epochs=3, refit=False).fit(df)
    assert "refit" not in plain.history_[0]
    assert not np.allclose(fc.predict()["yhat"], plain.predict()["yhat"])  # trained on the last window too


def test_series_with_zeros_are_shifted_not_refused():
    df = seasonal_panel(n_series=3, n=30)
    df.loc[df.index[:3], "y"] = 0.0  # the first series starts with zeros
    fc = small().fit(df)
    assert fc.config["series_shifts"][0] > 0 and fc.config["series_shifts"][1] == 0
    assert np.all(np.isfinite(fc.predict()["yhat"]))


def test_cross_validation_and_window_input():
    df = seasonal_panel(n_series=3, n=36)
    fc = small()
    cv = fc.cross_validation(df, n_windows=2)
    assert len(cv) == 3 * 2 * 4 and np.all(np.isfinite(cv["yhat"]))
    uid, x = fc.window_input("s1")
    assert uid == "s1" and x.shape == (36 - 2 * 4, 12)  # fit saw 28 values; L = max(2H, 3m)
    assert x.dtype == np.float32


@pytest.mark.parametrize("kw, name", [
    (dict(model="esrnn_typo"), "model"),
    (dict(futr_exog_list=["promo"]), "futr_exog_list"),
    (dict(hist_exog_list=["visits"]), "hist_exog_list"),
    (dict(stat_exog_list=["size"]), "stat_exog_list"),
    (dict(patch=2), "patch"),
    (dict(level_penalty=-1.0), "level_penalty"),
    (dict(refit="yes"), "refit"),
    (dict(loss_weights="msae"), "loss_weights: expected one of 'none', 'mase', got 'msae'"),
    (dict(model="lstm", loss_weights="mase"), "loss_weights: only model='esrnn'"),
])
def test_bad_arguments_are_refused_by_name(kw, name):
    with pytest.raises(ValueError, match=name):
        small(**kw)


def test_cli_esrnn_backtest_future_and_json(tmp_path, capsys):
    csv = tmp_path / "tiny.csv"
    seasonal_panel(n_series=4, n=28).to_csv(csv, index=False)
    out = str(tmp_path / "run")
    tiny = ["--csv", str(csv), "--horizon", "4", "--season-length", "4", "--model", "esrnn", "--epochs", "1",
            "--batches-per-epoch", "2", "--hidden-size", "8", "--no-progress"]
    assert main(["forecast", *tiny, "--baselines", "naive,theta,ets (damped)", "--out", out]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    methods = [r["method"] for r in res["table"]]
    assert methods[0].startswith("ES-RNN") and methods[-1].startswith("combination: median of ES-RNN")
    assert res["config"]["model"] == "esrnn" and res["config"]["batch_size"] == 32
    f = pd.read_csv(os.path.join(out, "forecasts.csv"))  # the combination: the point-by-point median of three
    np.testing.assert_allclose(f[methods[-1]], np.median(f[[methods[0], "theta", "ets (damped)"]], axis=1),
                               rtol=1e-12)
    capsys.readouterr()
    fut = str(tmp_path / "future")
    assert main(["forecast", *tiny, "--future", "--json", "--quiet", "--out", fut]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "future" and summary["config"]["model"] == "esrnn"
    assert len(pd.read_csv(os.path.join(fut, "forecasts.csv"))) == 4 * 4
    report = tmp_path / "report.html"  # report/explain read the ES-RNN run folder's normalised window
    assert main(["report", fut, "--out", str(report)]) == 0 and report.stat().st_size > 10_000
    assert main(["explain", fut]) == 0 and "steps)" in capsys.readouterr().out
    mase = str(tmp_path / "mase")
    assert main(["forecast", *tiny, "--loss-weights", "mase", "--baselines", "", "--out", mase]) == 0
    assert json.load(open(os.path.join(mase, "results.json")))["config"]["loss_weights"] == "mase"
    assert Forecaster.load(os.path.join(mase, "model.safetensors")).config["loss_weights"] == "mase"
    capsys.readouterr()
    lstm = [a if a != "esrnn" else "lstm" for a in tiny]
    assert main(["forecast", *lstm, "--loss-weights", "mase", "--out", str(tmp_path / "bad")]) != 0
    assert "--loss-weights: only --model esrnn" in capsys.readouterr().err
    assert main(["forecast", *lstm, "--level-penalty", "1", "--out", str(tmp_path / "bad")]) != 0
    assert "--level-penalty: only --model esrnn" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["forecast", "--model", "arima", "--out", str(tmp_path / "bad2")])
    assert "--model: invalid choice: 'arima'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "lots"])
def test_cli_level_penalty_is_checked_by_argparse(value, tmp_path, capsys):
    """--level-penalty is a number >= 0, refused as a usage error (exit 2) before any work or run folder."""
    from lstmkit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["forecast", "--model", "esrnn", "--level-penalty", value, "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "argument --level-penalty: expected a number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
