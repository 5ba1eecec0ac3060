"""Forecaster(freq=...), as neuralforecast's NeuralForecast(freq=...): the step every series is checked against and
the predicted times follow; absent, each series' step is inferred as before."""
import numpy as np
import pytest

pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("safetensors")

from lstmkit.tasks.forecast import Forecaster  # noqa: E402

TINY = dict(horizon=3, hidden_size=4, epochs=1, batches_per_epoch=1, batch_size=16)


def frame(ds, uid="a"):
    t = np.arange(len(ds))
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": 50.0 + 5 * np.sin(t)})


def log(*_):
    pass


ON_15TH = pd.date_range("2000-01-15", periods=20, freq=pd.DateOffset(months=1))
MONTH_ENDS = pd.date_range("2000-01-31", periods=20, freq="ME")


def test_a_monthly_series_on_the_15th_is_refused_without_freq_and_read_with_it():
    with pytest.raises(ValueError, match=r"series 'a' is not on a regular calendar .* give the Forecaster freq="):
        Forecaster(**TINY).fit(frame(ON_15TH), log=log)
    fc = Forecaster(**TINY, freq=pd.DateOffset(months=1)).fit(frame(ON_15TH), log=log)
    assert fc.predict()["ds"].tolist() == list(pd.date_range("2001-09-15", periods=3, freq=pd.DateOffset(months=1)))


def test_data_off_the_given_freq_is_refused_naming_series_and_freq():
    with pytest.raises(ValueError, match=r"series 'a' has ds 2000-01-15 00:00:00, not on freq='MS'"):
        Forecaster(**TINY, freq="MS").fit(frame(ON_15TH), log=log)
    month_starts = pd.date_range("2000-01-01", periods=20, freq="MS")
    with pytest.raises(ValueError, match=r"series 'b' has ds 2000-01-01 00:00:00, not on freq='ME'"):
        Forecaster(**TINY, freq="ME").fit(pd.concat([frame(MONTH_ENDS), frame(month_starts, "b")]), log=log)
    with pytest.raises(ValueError, match=r"series 'a' has ds 2000-05-31 .* after 2000-03-31 .* freq='ME' puts "
                                         r"2000-04-30"):
        Forecaster(**TINY, freq="ME").fit(frame(MONTH_ENDS.delete(3)), log=log)


def test_predicted_times_follow_freq_and_short_histories_suffice():
    """Month-end stays month-end (2000-02-29, then 03-31); one or two rows are enough when the step is given
    (a two-row datetime history was refused as irregular: pandas infers no calendar from two dates)."""
    fc = Forecaster(**TINY, freq="ME").fit(frame(MONTH_ENDS), log=log)
    assert fc.predict()["ds"].tolist() == list(pd.date_range("2001-09-30", periods=3, freq="ME"))
    two = frame(MONTH_ENDS[:2], "new")
    assert fc.predict(two)["ds"].tolist() == list(pd.date_range("2000-03-31", periods=3, freq="ME"))
    assert fc.predict(frame(MONTH_ENDS[:1], "new"))["ds"].tolist() == list(pd.date_range("2000-02-29", periods=3,
                                                                                         freq="ME"))
    with pytest.raises(ValueError, match="two times are too few to infer a calendar"):
        Forecaster(**TINY).fit(frame(MONTH_ENDS), log=log).predict(two)


def test_an_integer_freq_is_the_step_of_integer_times():
    df = frame(np.arange(0, 40, 2))
    fc = Forecaster(**TINY, freq=2).fit(df, log=log)
    assert fc.predict()["ds"].tolist() == [40, 42, 44]
    assert fc.predict(frame(np.array([7]), "new"))["ds"].tolist() == [9, 11, 13]
    with pytest.raises(ValueError, match=r"series 'a' has a gap after ds=0 \(step 2, freq=3 is 3\)"):
        Forecaster(**TINY, freq=3).fit(df, log=log)
    with pytest.raises(ValueError, match="freq: an integer step is for integer ds; df's ds holds datetimes"):
        Forecaster(**TINY, freq=1).fit(frame(MONTH_ENDS), log=log)
    with pytest.raises(ValueError, match="freq: a pandas offset is for datetime ds; df's ds holds int64"):
        Forecaster(**TINY, freq="D").fit(df, log=log)


@pytest.mark.parametrize("freq, error, match", [
    ("xyz", ValueError, r"freq: expected a pandas offset alias .* got 'xyz'"),
    (0, ValueError, "freq: expected a positive integer step"),
    (1.5, TypeError, "freq: expected .* got float 1.5"),
    (True, TypeError, "freq: expected .* got bool True"),
])
def test_bad_freq_is_refused_when_built(freq, error, match):
    with pytest.raises(error, match=match):
        Forecaster(**TINY, freq=freq)


@pytest.mark.parametrize("freq", [pd.DateOffset(months=1), "MS"])
def test_a_saved_model_keeps_its_freq(tmp_path, freq):
    ds = ON_15TH if isinstance(freq, pd.DateOffset) else pd.date_range("2000-01-01", periods=20, freq="MS")
    fc = Forecaster(**TINY, freq=freq).fit(frame(ds), log=log)
    path = str(tmp_path / "fc.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.freq == fc.freq
    pd.testing.assert_frame_equal(back.predict(), fc.predict(), check_exact=False, rtol=1e-6)
    assert back.predict(frame(ds[:2], "new"))["ds"].tolist() == list(ds[2:5])


def test_cross_validation_reads_freq():
    cv = Forecaster(**TINY, freq=pd.DateOffset(months=1)).cross_validation(frame(ON_15TH), n_windows=2, log=log)
    assert (cv["ds"].dt.day == 15).all() and (cv["cutoff"].dt.day == 15).all() and len(cv) == 6


def _monthly_csv(path, start="2000-01-15", n=30):
    """Three monthly series on the given day of the month, as the CLI's long-format CSV."""
    ds = pd.date_range(start, periods=n, freq=pd.DateOffset(months=1))
    pd.concat([frame(ds, f"s{k}") for k in range(3)]).to_csv(path, index=False)
    return path


def _cli(argv, capsys):
    from lstmkit.cli import main

    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err


CLI_FAST = ["--horizon", "3", "--hidden-size", "4", "--epochs", "1", "--batches-per-epoch", "1", "--no-progress"]


def test_cli_freq_reads_a_monthly_csv_on_the_15th_and_forecasts_on_it(tmp_path, capsys):
    """lstmkit forecast --freq: the CSV no alias describes (monthly on the 15th) is refused without it, naming the
    flag; with --freq months=1 every series is checked on it, the season is 12 from it, and --future's dates
    stay on the 15th."""
    csv = _monthly_csv(tmp_path / "m.csv")
    status, err = _cli(["forecast", "--csv", csv, "--future", *CLI_FAST, "--out", tmp_path / "a"], capsys)
    assert status == 2 and "--freq months=1" in err, err
    status, err = _cli(["forecast", "--csv", csv, "--future", "--freq", "months=1", *CLI_FAST, "--out",
                        tmp_path / "b"], capsys)
    assert status == 0, err
    out = pd.read_csv(tmp_path / "b" / "forecasts.csv", parse_dates=["ds"])
    assert sorted(out["ds"].dt.strftime("%Y-%m-%d").unique()) == ["2002-07-15", "2002-08-15", "2002-09-15"]
    assert (tmp_path / "b" / "model.safetensors").exists()
    status, err = _cli(["forecast", "--csv", csv, "--freq", "months=1", *CLI_FAST, "--baselines", "naive",
                        "--out", tmp_path / "c"], capsys)  # the backtest reads it too
    assert status == 0, err


@pytest.mark.parametrize("argv, phrase", [
    (["--freq", "MS"], "series 's0' has ds 2000-01-15 00:00:00, not on freq='MS'"),
    (["--freq", "3"], "freq: an integer step is for integer ds"),
    (["--freq", "months=0"], "argument --freq: expected UNIT=N with UNIT one of years, months, weeks, days"),
    (["--freq", "fortnightly"], "argument --freq: expected a pandas offset alias such as 'MS'"),
])
def test_cli_freq_off_the_data_or_malformed_is_refused_by_name(tmp_path, capsys, argv, phrase):
    csv = _monthly_csv(tmp_path / "m.csv")
    status, err = _cli(["forecast", "--csv", csv, "--future", *argv, *CLI_FAST, "--out", tmp_path / "r"], capsys)
    assert status == 2 and phrase in err, err
    assert not (tmp_path / "r").exists()  # nothing left behind


def test_cli_freq_with_a_bundled_set_is_refused(tmp_path, capsys):
    status, err = _cli(["forecast", "--dataset", "airpassengers", "--freq", "MS", *CLI_FAST, "--out", tmp_path / "r"],
                       capsys)
    assert status == 2 and "--freq: only with --csv" in err, err


def test_a_known_series_on_the_15th_keeps_its_phase_when_its_first_months_are_dropped():
    """The phase of a known series counts from its first training time on its step (here pd.DateOffset(months=1)),
    not from the first row passed; a history off that calendar (the 16th) is refused by name."""
    df = pd.concat([frame(ON_15TH, "a"), frame(ON_15TH, "b").assign(y=lambda d: d["y"] + 3)], ignore_index=True)
    fc = Forecaster(**{**TINY, "season_length": 4}, freq=pd.DateOffset(months=1)).fit(df, log=log)
    late = df[df["ds"] >= ON_15TH[3]]
    pd.testing.assert_frame_equal(fc.predict(late), fc.predict(df), check_exact=True)
    with pytest.raises(ValueError, match=r"series 'a' starts at ds 2000-04-16 00:00:00, which is not on the calendar"):
        fc.predict(late.assign(ds=late["ds"] + pd.Timedelta(days=1)))


def test_a_saved_model_places_a_time_zone_history_across_a_clock_change(tmp_path):
    """The saved first time keeps only its UTC offset: the steps to a history's first time are counted in the
    data's zone (calendar days across the March clock change)."""
    ds = pd.date_range("2000-03-20", periods=30, freq="D", tz="Europe/Paris")
    df = pd.concat([frame(ds, "a"), frame(ds, "b").assign(y=lambda d: d["y"] + 3)], ignore_index=True)
    fc = Forecaster(**{**TINY, "season_length": 7}).fit(df, log=log)
    path = str(tmp_path / "fc.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    late = df[df["ds"] >= ds[9]]  # starts after the clock change
    pd.testing.assert_frame_equal(back.predict(late), back.predict(df), check_exact=True)
