"""Forecaster with neuralforecast's conventions: custom column names, ids and datetimes kept, covariates
(futr/hist/stat exog), save/load then predict, cross_validation, and bad data refused by series name."""
import numpy as np
import pytest

pytest.importorskip("torch")
pd = pytest.importorskip("pandas")
pytest.importorskip("safetensors")

from lstmkit.tasks.forecast import Forecaster  # noqa: E402

TINY = dict(hidden_size=8, epochs=2, batches_per_epoch=2, batch_size=32)


def quiet(**kw):
    return Forecaster(**{"horizon": 4, "season_length": 4, **TINY, **kw})


def panel(n_series=3, n=40, ids=(101, 202, 303), dates=True, **cols):
    """Quarterly series with ids ``ids`` (ints by default) and, when asked, covariate columns."""
    frames = []
    for k, uid in zip(range(n_series), ids):
        t = np.arange(n)
        ds = pd.date_range("2000-03-31", periods=n, freq="QE-DEC") if dates else t
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": 50 + k + 5 * np.sin(2 * np.pi * t / 4),
                                    **{c: f(t, k) for c, f in cols.items()}}))
    return pd.concat(frames, ignore_index=True)


def log(*_):
    pass


def test_ids_keep_their_dtype_and_datetimes_stay_datetimes():
    df = panel()
    pred = quiet().fit(df, log=log).predict()
    assert pred["unique_id"].dtype == df["unique_id"].dtype and set(pred["unique_id"]) == {101, 202, 303}
    assert pd.api.types.is_datetime64_any_dtype(pred["ds"])
    first = pred[pred["unique_id"] == 101]["ds"].tolist()
    assert first == list(pd.date_range("2010-03-31", periods=4, freq="QE-DEC"))  # the 4 quarters after 2009Q4
    merged = pred.merge(df, on=["unique_id", "ds"], how="left")  # merges: the keys share dtypes
    assert len(merged) == len(pred)


def test_custom_column_names():
    df = panel().rename(columns={"unique_id": "store", "ds": "date", "y": "sales"})
    fc = quiet(id_col="store", time_col="date", target_col="sales").fit(df, log=log)
    pred = fc.predict(df)
    assert list(pred.columns[:4]) == ["store", "date", "step", "yhat"] and len(pred) == 12
    with pytest.raises(ValueError, match="missing column"):
        quiet().fit(df, log=log)


def test_an_extra_column_is_an_error_naming_it():
    df = panel(price=lambda t, k: t * 1.0)
    with pytest.raises(ValueError, match="'price' would be ignored"):
        quiet().fit(df, log=log)


def test_covariates_future_history_and_static():
    df = panel(promo=lambda t, k: (t % 4 == 1) * 1.0, visits=lambda t, k: 10.0 + t)
    static = pd.DataFrame({"unique_id": [101, 202, 303], "size": [1.0, 2.0, 3.0]})
    fc = quiet(futr_exog_list=["promo"], hist_exog_list=["visits"], stat_exog_list=["size"])
    fc.fit(df, static_df=static, log=log)
    assert fc._input_size() == 4 * 3 + 4 + 1  # P values of y, promo, visits; 4 phases; 1 static
    with pytest.raises(ValueError, match="futr_df: needed"):
        fc.predict()
    future = pd.DataFrame({"unique_id": np.repeat([101, 202, 303], 4),
                           "ds": np.tile(pd.date_range("2010-03-31", periods=4, freq="QE-DEC"), 3),
                           "promo": np.tile([0.0, 1.0, 0.0, 0.0], 3)})
    pred = fc.predict(futr_df=future)
    assert len(pred) == 12 and np.isfinite(pred["yhat"]).all()
    # the future covariate is read: changing it changes the forecast
    other = fc.predict(futr_df=future.assign(promo=5.0))
    assert np.abs(other["yhat"].to_numpy() - pred["yhat"].to_numpy()).max() > 1e-6
    # neuralforecast's argument order: predict(df, static_df, futr_df), cross_validation(df, static_df, n_windows)
    pd.testing.assert_frame_equal(fc.predict(df, static, future), fc.predict(df, futr_df=future, static_df=static))
    assert len(fc.cross_validation(df, static, 1, log=log)) == 12
    with pytest.raises(ValueError, match="lacks ds"):
        fc.predict(futr_df=future.iloc[1:])
    with pytest.raises(ValueError, match="static_df: needed"):
        quiet(stat_exog_list=["size"]).fit(panel(), log=log)


def test_save_load_then_predict_the_same_series(tmp_path):
    df = panel()
    fc = quiet(ensemble=2).fit(df, log=log)
    path = str(tmp_path / "fc.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    a, b = fc.predict(), back.predict()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)  # same weights, same inputs (float32)


def test_cross_validation_puts_forecasts_beside_y_per_cutoff():
    df = panel(dates=False)
    cv = quiet().cross_validation(df, n_windows=3, step_size=2, log=log)
    assert list(cv.columns[:3]) == ["unique_id", "ds", "cutoff"] and "y" in cv.columns and "yhat" in cv.columns
    assert len(cv) == 3 * 3 * 4
    assert sorted(cv["cutoff"].unique().tolist()) == [31, 33, 35]  # n − H − (windows − 1 − k)·step_size − 1
    assert cv["cutoff"].dtype == df["ds"].dtype
    truth = df.set_index(["unique_id", "ds"])["y"]
    np.testing.assert_array_equal(cv["y"].to_numpy(), truth.loc[list(zip(cv["unique_id"], cv["ds"]))].to_numpy())
    assert ((cv["ds"] > cv["cutoff"]) & (cv["ds"] <= cv["cutoff"] + 4)).all()


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(y=d["y"].where(d.index != 45)), r"series 202 has a missing or non-finite y"),
    (lambda d: d.drop(index=50), r"series 202 is not on a regular calendar"),
    (lambda d: d[(d["unique_id"] != 303) | (d.index < 86)], r"too short to train on .*303 \(6\)"),
])
def test_bad_series_are_refused_up_front_by_name(mutate, match):
    with pytest.raises(ValueError, match=match):
        quiet().fit(mutate(panel()), log=log)


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(unique_id=d["unique_id"].astype(object).where(d.index != 39, None)),
     r"column 'unique_id' is missing .* 1 row\(s\), the first at row 39"),
    (lambda d: d.assign(unique_id=d["unique_id"].astype(float).where(d.index != 12)), r"'unique_id' is missing"),
    (lambda d: d.assign(ds=d["ds"].where(d.index != 50)), r"column 'ds' is missing .* first at row 50"),
])
def test_missing_ids_and_times_are_refused_not_dropped(mutate, match):
    """pandas' groupby drops a NaN id's row without a word (the series was forecast from the dropped row's date);
    a NaT read as a gap. Both are named up front."""
    with pytest.raises(ValueError, match=match):
        quiet().fit(mutate(panel()), log=log)


@pytest.mark.parametrize("kw, match", [
    (dict(quantiles=(0.9, 0.5, 0.1)), "strictly increasing"), (dict(quantiles=(0.5, 0.5)), "strictly increasing"),
    (dict(quantiles=(0.1, 0.5, 1.5)), r"in \(0, 1\)"), (dict(quantiles=(0.1, 0.9)), "must include 0.5"),
    (dict(ensemble=0), "ensemble"), (dict(batches_per_epoch=0), "batches_per_epoch"),
    (dict(batch_size=0), "batch_size"), (dict(seed=None), "seed"), (dict(horizon=2.5), "horizon"),
    (dict(input_length=0), "input_length"), (dict(epochs=-1), "epochs"), (dict(lr="fast"), "lr"),
])
def test_bad_settings_are_refused_when_built(kw, match):
    """Quantiles out of order came back under each other's column names; the other values failed deep inside
    fit or predict, or trained nothing without a word."""
    with pytest.raises(ValueError, match=match):
        quiet(**kw)


def test_a_repeated_future_row_is_refused_by_name():
    df = panel(temp=lambda t, k: np.cos(t + k))
    fc = quiet(futr_exog_list=["temp"]).fit(df, log=log)
    futr = pd.concat([pd.DataFrame({"unique_id": u, "ds": pd.date_range(g["ds"].max(), periods=5, freq="QE-DEC")[1:],
                                    "temp": 0.0}) for u, g in df.groupby("unique_id")], ignore_index=True)
    fc.predict(futr_df=futr)
    with pytest.raises(ValueError, match=r"futr_df: series 101 has ds .* more than once"):
        fc.predict(futr_df=pd.concat([futr, futr.iloc[[0]]]))


def test_one_integer_time_is_not_enough_to_forecast_from():
    """A one-row history with integer times assumed step 1 (a model of step-7 data forecast ds 101, 102, 103):
    refused, as one datetime already was."""
    df = panel(dates=False)
    df["ds"] *= 7
    fc = quiet().fit(df, log=log)
    one = pd.DataFrame({"unique_id": [999], "ds": [100], "y": [50.0]})
    with pytest.raises(ValueError, match="one time is not enough"):
        fc.predict(one)


def test_integer_time_gaps_are_refused():
    df = panel(dates=False)
    with pytest.raises(ValueError, match=r"series 101 has a gap after ds=9"):
        quiet().fit(df.drop(index=10), log=log)


def test_lstmkit_predict_reads_dates_and_future_covariates(tmp_path, capsys):
    from lstmkit.cli import main

    df = panel(promo=lambda t, k: (t % 4 == 1) * 1.0)
    fc = quiet(futr_exog_list=["promo"]).fit(df, log=log)
    model = str(tmp_path / "fc.safetensors")
    fc.save(model)
    history, future = tmp_path / "history.csv", tmp_path / "future.csv"
    df.to_csv(history, index=False)  # dates become text in a CSV
    pd.DataFrame({"unique_id": np.repeat([101, 202, 303], 4),
                  "ds": np.tile(pd.date_range("2010-03-31", periods=4, freq="QE-DEC"), 3),
                  "promo": 0.0}).to_csv(future, index=False)
    assert main(["predict", "--model", model, "--csv", str(history)]) == 2
    assert "futr_df: needed" in capsys.readouterr().err
    assert main(["predict", "--model", model, "--csv", str(history), "--futr-csv", str(future)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("unique_id,ds,step,yhat") and len(lines) == 13
    assert lines[1].startswith("101,2010-03-31,1,")


def test_the_api_is_silent_by_default_and_verbose_prints_epochs(capsys):
    df = panel()
    fc = Forecaster(horizon=4, season_length=4, **TINY).fit(df)  # no log given: verbose=0
    fc.predict()
    fc.cross_validation(df, n_windows=2)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    Forecaster(horizon=4, season_length=4, verbose=1, **TINY).fit(df)
    out = capsys.readouterr().out
    assert "member 1/1" in out and out.count("epoch ") == TINY["epochs"] and "pinball" in out


def _lengths(*ns):
    return pd.concat([pd.DataFrame({"unique_id": k, "ds": np.arange(n), "y": 50.0 + np.arange(n)})
                      for k, n in enumerate(ns)], ignore_index=True)


@pytest.mark.parametrize("model", ["lstm", "esrnn"])
def test_one_minimum_length_in_every_check_and_message(model):
    """The up-front check asked for 5 values (horizon 3), then fitting said 'a series needs more than 7' (the LSTM)
    or trained on nothing, a training loss of 0.0 (ES-RNN). Both numbers now come from min_length, up front."""
    fc = Forecaster(horizon=3, model=model, **TINY)
    assert fc.min_length() == 5  # 3 targets after max(m, 2) = 2 values
    with pytest.raises(ValueError, match=r"no series long enough to train on: each needs at least 5 values .*, "
                                         r"and one at least 8 .* the longest has 7"):
        fc.fit(_lengths(7, 6), log=log)
    with pytest.raises(ValueError, match=r"1 series too short to train on \(need at least 5 values .*\): 1 \(4\)"):
        fc.fit(_lengths(8, 4), log=log)
    fc.fit(_lengths(8, 5), log=log)  # the boundary: one training window, and each series' validation window
    assert fc.history_[0]["history"][0]["train_loss"] > 0


def test_cross_validation_states_the_same_minimum_before_its_first_cutoff():
    fc = Forecaster(horizon=3, **TINY)
    with pytest.raises(ValueError, match=r"1 series too short to train on \(need at least 5 values .* before the "
                                         r"first cutoff \(the last 5 values are for 2 window\(s\) of 3 steps, 2 "
                                         r"apart\)\): 1 \(4\)"):
        fc.cross_validation(_lengths(20, 9), n_windows=2, step_size=2, log=log)
    assert len(fc.cross_validation(_lengths(20, 10), n_windows=2, step_size=2, log=log)) == 2 * 2 * 3


def test_a_frame_that_is_not_a_dataframe_is_refused_by_name():
    """A dict as df failed with "AttributeError: 'dict' object has no attribute 'columns'"."""
    df = panel(promo=lambda t, k: (t % 4 == 1) * 1.0)
    static = pd.DataFrame({"unique_id": [101, 202, 303], "size": [1.0, 2.0, 3.0]})
    fc = quiet(futr_exog_list=["promo"], stat_exog_list=["size"])
    as_dict = {c: df[c].tolist() for c in df.columns}
    with pytest.raises(TypeError, match=r"df: expected a pandas DataFrame with columns unique_id, ds, y, promo, got "
                                        r"dict; pd.DataFrame\(...\) builds one"):
        fc.fit(as_dict, static_df=static, log=log)
    with pytest.raises(TypeError, match=r"df: expected a pandas DataFrame .* got numpy.ndarray"):
        fc.cross_validation(df.to_numpy(), static_df=static, log=log)
    with pytest.raises(TypeError, match=r"static_df: expected a pandas DataFrame with columns unique_id, size, got "
                                        r"dict"):
        fc.fit(df, static_df={"unique_id": [101, 202, 303], "size": [1.0, 2.0, 3.0]}, log=log)
    fc.fit(df, static_df=static, log=log)
    with pytest.raises(TypeError, match=r"df: expected a pandas DataFrame .* got pandas.Series"):
        fc.predict(df["y"])
    with pytest.raises(TypeError, match=r"futr_df: expected a pandas DataFrame with columns unique_id, ds, promo, "
                                        r"got dict"):
        fc.predict(futr_df={"unique_id": [101], "ds": [0], "promo": [0.0]})


# -- the season phase of a known series follows its calendar, not the first row passed (A1) --------------------


def seasonal(m: int, n: int, dates: bool):
    """Three series of period m (ids 101, 202, 303): integer ds from 3 (step 1) or monthly dates ('MS')."""
    frames = []
    for k, uid in enumerate((101, 202, 303)):
        t = np.arange(n)
        ds = pd.date_range("2001-01-01", periods=n, freq="MS") if dates else t + 3
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": 20.0 + 2 * k + 8 * np.sin(2 * np.pi * t / m)}))
    return pd.concat(frames, ignore_index=True)


def drop_first(df, k: int):
    """Each series without its first k rows: the same last values at the same times."""
    return df[df.groupby("unique_id").cumcount() >= k]


def position_based(fc, df) -> np.ndarray:
    """The yhat of phases counted from each history's first value, as the model read every history before
    series_starts (predict_arrays has no times to anchor on)."""
    return fc.predict_arrays({u: g["y"].to_numpy() for u, g in df.groupby("unique_id")})[:, :, 1].ravel()


@pytest.mark.parametrize("m, n, dates", [(4, 40, False), (12, 64, True)])
def test_a_known_series_forecasts_the_same_from_a_truncated_history(m, n, dates):
    """predict(df) with a series' first k rows dropped read its values at phases shifted by k (the phase was the
    position in the rows passed): the same last values at the same dates forecast otherwise. Now the phase counts
    from the series' first training time, so the forecast is the same, bit for bit while the input window is."""
    df = seasonal(m, n, dates)
    fc = quiet(season_length=m).fit(df, log=log)
    whole = fc.predict(df)
    pd.testing.assert_frame_equal(whole, fc.predict(), check_exact=True)
    for k in (1, m - 1, m, 2 * m):  # the last window (input length 3m) still within the rows left
        pd.testing.assert_frame_equal(fc.predict(drop_first(df, k)), whole, check_exact=True)


def test_a_longer_history_of_a_known_series_is_read_in_phase():
    """A history starting before the training data: its phases count back from the training start."""
    df = seasonal(4, 40, dates=False)
    fc = quiet().fit(drop_first(df, 3), log=log)
    pd.testing.assert_frame_equal(fc.predict(df), fc.predict(), check_exact=True)


def test_a_saved_model_reads_truncated_histories_in_phase(tmp_path):
    df = panel()  # quarter-end dates
    fc = quiet().fit(df, log=log)
    path = str(tmp_path / "fc.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert back.config["series_starts"] == fc.config["series_starts"]
    assert back.config["series_starts"]["101"] == ["2000-03-31T00:00:00", "QE-DEC"]
    pd.testing.assert_frame_equal(back.predict(drop_first(df, 1)), back.predict(df), check_exact=True)
    pd.testing.assert_frame_equal(back.predict(drop_first(df, 1)), fc.predict(df), check_exact=False, rtol=1e-6)


def test_a_model_saved_before_series_starts_forecasts_as_before(tmp_path):
    """A file without 'series_starts' (saved before it existed) loads and forecasts as it did: its own histories
    as before (whole seasons dropped on save keep their phase), other ones with phases from their first row."""
    df = panel(dates=False)
    fc = quiet().fit(df, log=log)
    del fc.config["series_starts"]
    path = str(tmp_path / "old.safetensors")
    fc.save(path)
    back = Forecaster.load(path)
    assert "series_starts" not in back.config
    pd.testing.assert_frame_equal(back.predict(), fc.predict(), check_exact=False, rtol=1e-6)
    cut = drop_first(df, 1)
    np.testing.assert_array_equal(back.predict(cut)["yhat"].to_numpy(), position_based(back, cut))


def test_a_new_id_has_no_calendar_its_phases_count_from_its_first_value():
    df = panel(dates=False)
    fc = quiet().fit(df, log=log)
    cut = drop_first(df, 1)
    renamed = cut.assign(unique_id=cut["unique_id"] + 1000)
    np.testing.assert_array_equal(fc.predict(renamed)["yhat"].to_numpy(), position_based(fc, cut))
    assert not np.array_equal(fc.predict(cut)["yhat"].to_numpy(), position_based(fc, cut))  # the known ids: in phase


def test_a_known_id_off_its_training_calendar_is_refused_by_name():
    df = panel(dates=False).assign(ds=lambda d: 2 * d["ds"])  # ds 0, 2, 4, ...
    fc = quiet().fit(df, log=log)
    odd = df.assign(ds=df["ds"] + 1)
    with pytest.raises(ValueError, match=r"df: series 101 starts at ds 1, which is not on the calendar the model was "
                                         r"trained on for that id \(first ds 0, step 2\).* or another id"):
        fc.predict(odd)
    dated = panel()
    with pytest.raises(ValueError, match=r"series 101 starts at ds 2000-03-31 00:00:00, which is not on the calendar"):
        fc.predict(dated)
    fc.predict(odd.assign(unique_id=odd["unique_id"] + 1000))  # as new series


def test_cross_validation_folds_forecast_as_before():
    """Its folds cut each series at the end: every fold starts where training did, so its phases are those of
    the rows passed, as before series_starts."""
    df = panel(dates=False)
    fc = quiet()
    cv = fc.cross_validation(df, n_windows=2, step_size=2, log=log)
    for cutoff, fold in cv.groupby("cutoff"):
        hist = df[df["ds"] <= cutoff]
        np.testing.assert_array_equal(fold["yhat"].to_numpy(), position_based(fc, hist))
        np.testing.assert_array_equal(fold["yhat"].to_numpy(), fc.predict(hist)["yhat"].to_numpy())


def test_predict_arrays_refuses_histories_predict_would_refuse():
    """A NaN in the input window came out as NaN forecasts, an inf as finite nonsense, an empty history as an
    IndexError; each is refused naming the series, as predict(df) refuses them."""
    fc = quiet().fit(panel(dates=False), log=log)
    y = 50 + 5 * np.sin(2 * np.pi * np.arange(40) / 4)
    assert np.isfinite(fc.predict_arrays({101: y})).all()
    for bad, match in [(np.where(np.arange(40) == 38, np.nan, y), r"ys\[101\]: 1 value\(s\) are not finite \(first "
                                                                   r"at position 38: nan\)"),
                       (np.where(np.arange(40) == 0, np.inf, y), "first at position 0: inf"),
                       (np.zeros(0), r"ys\[101\]: expected a non-empty 1-D history")]:
        with pytest.raises(ValueError, match=match):
            fc.predict_arrays({101: bad})


def test_messages_name_ids_and_times_as_written(tmp_path, capsys):
    """Integer ids and times stay integers in a message (a row of mixed types read them as 1.0 and 5.0), and an
    empty id in a CSV is named by its line, not by its place after the job's sort."""
    t = np.arange(20)
    df = pd.concat([pd.DataFrame({"unique_id": k, "ds": t, "y": 10.0 + t}) for k in (1, 2)], ignore_index=True)
    df.loc[5, "y"] = np.nan
    with pytest.raises(ValueError, match=r"series 1 has a missing or non-finite y at ds=5 \("):
        quiet().fit(df, log=log)
    from lstmkit.cli import main

    csv = tmp_path / "f.csv"
    csv.write_text("unique_id,ds,y\n" + "\n".join(f"{'' if i == 7 else 'b' if i < 20 else 'a'},{i % 20},{i}"
                                                  for i in range(40)))
    assert main(["forecast", "--csv", str(csv), "--horizon", "2", "--out", str(tmp_path / "r")]) == 2
    assert "column unique_id is empty in 1 row(s), the first in data row 8 (line 9 of a CSV)" in capsys.readouterr().err


def test_ids_that_print_the_same_are_refused():
    """A saved model keys its series by their text: the int 1 and the str "1" shared one calendar, and one
    series was forecast out of phase by up to 2.97 with no word. Refused, naming both."""
    frame = panel(n_series=2, ids=(1, "1"))
    with pytest.raises(ValueError, match="holds 1 \\(int\\) and '1' \\(str\\), which a saved model cannot tell apart"):
        quiet().fit(frame)
