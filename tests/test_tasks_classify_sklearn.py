"""SequenceClassifier as a scikit-learn estimator: the estimator checks, labels in y's dtype, silence by
default, clone/cross_val_score/GridSearchCV, and the input layout named (never guessed)."""
import numpy as np
import pytest

pytest.importorskip("torch")
sklearn = pytest.importorskip("sklearn")
pytest.importorskip("safetensors")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402

from lstmkit.tasks.classify import SequenceClassifier  # noqa: E402

SMALL = dict(hidden_size=8, epochs=5, batch_size=32, patience=2, val_fraction=0.1)

# Checks a sequence model cannot meet, each for a stated reason. Everything else in check_estimator must pass.
EXPECTED_FAILED_CHECKS = {
    "check_n_features_in": "a (N, T) array is N univariate sequences of T steps, and any T is valid input "
                           "afterwards; the fitted width is the channel count n_channels_ (1 here), not T",
    "check_n_features_in_after_fitting": "same reason: predict on sequences of another length is correct use, "
                                         "so a different number of columns is not an error",
    "check_classifiers_train": "its last step calls predict(X.T), i.e. 2 sequences of 300 steps, which is valid "
                               "input for a sequence model; its accuracy bar (> 0.83 on blobs) is asserted with "
                               "more epochs in test_blobs_read_as_two_step_sequences_are_learned",
}
# the contract, not the accuracy, is checked here: as few epochs as keep every fit meaningful (~100 fits)
CHECK_SETTINGS = dict(hidden_size=8, epochs=2, batch_size=64, patience=2, val_fraction=0.1)


def quiet(**kw):
    return SequenceClassifier(**{**SMALL, **kw})


def blobs(n=150, seed=0):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=n, centers=3, random_state=seed)
    return (X - X.mean(0)) / X.std(0), y


def test_check_estimator_passes_all_but_the_listed_checks():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(SequenceClassifier(**CHECK_SETTINGS), expected_failed_checks=EXPECTED_FAILED_CHECKS,
                              on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert failed == set(), failed
    assert xfailed == set(EXPECTED_FAILED_CHECKS)  # each listed failure still fails: the list stays honest
    assert sum(r["status"] == "passed" for r in results) >= 45


def test_blobs_read_as_two_step_sequences_are_learned():
    X, y = blobs(300)
    clf = quiet().fit(X, y)
    assert clf.score(X, y) > 0.83  # check_classifiers_train's bar


def test_integer_labels_come_back_as_integers_and_score_is_accuracy():
    X, y = blobs()
    clf = quiet().fit(X, y)
    pred = clf.predict(X)
    assert pred.dtype == y.dtype and clf.classes_.tolist() == [0, 1, 2]
    assert clf.score(X, y) == np.mean(pred == y)
    proba = clf.predict_proba(X[:7])
    assert proba.shape == (7, 3) and np.allclose(proba.sum(1), 1, atol=1e-12)
    named = quiet().fit(X, np.array(["a", "bb", "c"])[y])
    assert named.predict(X[:3]).dtype.kind == "U"


def test_fit_prints_nothing_unless_verbose(capsys):
    X, y = blobs(60)
    quiet(epochs=2).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    quiet(epochs=2, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) == 2  # one line per epoch
    assert any(line.startswith("validation: fixed") for line in lines)  # and the validation policy used, once


def test_clone_cross_val_score_and_grid_search():
    X, y = blobs(90)
    base = quiet(epochs=3)
    twin = clone(base)
    assert twin.get_params() == base.get_params() and twin is not base
    scores = cross_val_score(base, X, y, cv=3)
    assert scores.shape == (3,) and np.all((0 <= scores) & (scores <= 1))
    grid = GridSearchCV(base, {"hidden_size": [4, 8]}, cv=2).fit(X, y)
    assert grid.best_params_["hidden_size"] in (4, 8)
    assert grid.predict(X).dtype == y.dtype


def test_save_load_keeps_label_dtype_and_predictions(tmp_path):
    X, y = blobs(60)
    clf = quiet(epochs=2).fit(X, y)
    path = str(tmp_path / "clf.safetensors")
    clf.save(path)
    back = SequenceClassifier.load(path)
    assert back.classes_.dtype == y.dtype
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-12)


def test_a_loaded_classifier_has_the_parameters_it_was_trained_with(tmp_path):
    """get_params of a loaded classifier were the constructor's defaults beyond the architecture (epochs 30, lr
    5e-3, ...), so clone(loaded).fit trained another model (0.041 apart); a text model's resolved layout None
    made clone(loaded).fit fail. Now the arguments as given come back, and clone(loaded) fits as the original."""
    X, y = blobs(60)
    given = dict(epochs=3, lr=0.01, batch_size=8, seed=7, val_fraction=0.0, patience=3, normalize="auto")
    clf = quiet(**given).fit(X, y)
    path = str(tmp_path / "clf.safetensors")
    clf.save(path)
    back = SequenceClassifier.load(path)
    assert {k: v for k, v in back.get_params().items() if k != "device"} == {
        k: v for k, v in clf.get_params().items() if k != "device"}
    np.testing.assert_allclose(clone(back).fit(X, y).predict_proba(X), clf.predict_proba(X), rtol=0, atol=1e-7)
    texts = ["good great fine" if i % 2 else "bad awful poor" for i in range(20)]
    text = SequenceClassifier(text=True, hidden_size=4, embed_dim=4, epochs=1).fit(texts, [i % 2 for i in range(20)])
    text.save(path)
    again = clone(SequenceClassifier.load(path)).fit(texts, [i % 2 for i in range(20)])
    np.testing.assert_allclose(again.predict_proba(texts), text.predict_proba(texts), rtol=0, atol=1e-7)


@pytest.mark.parametrize("unit", ["D", "s", "ns"])
def test_datetime_labels_save_and_load(unit, tmp_path):
    """np.datetime64 labels (tolist gives date objects, which JSON lacks) are kept as counts of their unit."""
    X, y = blobs(40)
    dates = np.array(["2020-01-01", "2021-06-30", "2022-12-31"], dtype=f"datetime64[{unit}]")[np.unique(
        y, return_inverse=True)[1]]
    clf = quiet(epochs=1).fit(X, dates)
    path = str(tmp_path / "clf.safetensors")
    clf.save(path)
    back = SequenceClassifier.load(path)
    assert back.classes_.dtype == dates.dtype and (back.classes_ == clf.classes_).all()
    assert (back.predict(X) == clf.predict(X)).all()


def _two_channel_cases(n=48, T=9, seed=0):
    """(N, T, 2) cases whose class is the sign of channel 1's mean; channel 0 is noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, T, 2))
    X[:, :, 1] += np.where(y == 1, 1.5, -1.5)[:, None]
    return X, y


def test_layout_nct_reads_the_transposed_data_as_the_same_cases():
    X, y = _two_channel_cases()
    ntc = quiet(epochs=2, val_fraction=0).fit(X, y)
    nct = quiet(epochs=2, val_fraction=0, layout="NCT").fit(X.transpose(0, 2, 1), y)
    assert nct.n_channels_ == ntc.n_channels_ == 2
    # the same cases, the same seed: the same model; float32 inputs, so agreement to float32 rounding
    np.testing.assert_allclose(nct.predict_proba(X.transpose(0, 2, 1)), ntc.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("layout", ["NTC", "NCT", "auto"])
def test_a_2d_array_is_univariate_in_every_layout(layout):
    """(N, T) is N univariate series whatever the layout (it was read as N one-step cases of T channels under
    NCT): the same model as the same data given as a list of 1-D sequences."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = (X[:, -1] > 0).astype(int)
    clf = quiet(epochs=2, val_fraction=0, layout=layout).fit(X, y)
    assert clf.n_channels_ == 1
    listed = quiet(epochs=2, val_fraction=0, layout=layout).fit(list(X), y)
    np.testing.assert_allclose(clf.predict_proba(X), listed.predict_proba(list(X)), atol=1e-6)


def test_fit_leaves_the_global_generators_as_they_were():
    """fit seeds its own training (same seed, same model) but puts Python's, NumPy's and torch's global
    generator states back: a caller's draws after fit continue where they were (scikit-learn's rule)."""
    import random

    import torch

    X, y = _two_channel_cases()
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    want = (np.random.rand(), random.random(), float(torch.rand(1)))
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    quiet(epochs=1, val_fraction=0).fit(X, y)
    assert (np.random.rand(), random.random(), float(torch.rand(1))) == want


@pytest.mark.parametrize("kw, match", [(dict(seed=None), "seed"), (dict(lr="fast"), "lr"), (dict(lr=0.0), "lr"),
                                       (dict(verbose="loud"), "verbose")])
def test_bad_training_settings_are_named_at_fit(kw, match):
    X, y = _two_channel_cases()
    with pytest.raises(ValueError, match=match):
        quiet(**kw).fit(X, y)


def test_layout_mismatch_at_predict_names_the_other_layout():
    X, y = _two_channel_cases(T=5)
    clf = quiet(epochs=1, val_fraction=0).fit(X, y)
    with pytest.raises(ValueError, match="read as NCT it would fit"):
        clf.predict(X.transpose(0, 2, 1))


def test_layout_auto_uses_varying_lengths_and_refuses_equal_ones():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(3, int(rng.integers(4, 12)))) for _ in range(30)]  # (C=3, T_i): aeon's order
    y = np.arange(30) % 2
    clf = quiet(epochs=1, val_fraction=0, layout="auto").fit(X, y)
    assert clf.layout_ == "NCT" and clf.n_channels_ == 3
    with pytest.raises(ValueError, match="cannot tell time from channels"):
        quiet(layout="auto").fit([rng.normal(size=(4, 3)) for _ in range(6)], np.arange(6) % 2)
    with pytest.raises(ValueError, match="ambiguous"):
        quiet(layout="auto").fit(np.zeros((6, 4, 3)), np.arange(6) % 2)
    with pytest.raises(ValueError, match="layout: expected one of"):
        quiet(layout="TNC").fit(np.zeros((6, 4, 3)), np.arange(6) % 2)


@pytest.mark.parametrize("bad, match", [
    (np.array([[0.0, np.nan, 1.0]] * 6), "NaN"),
    ([np.zeros((4, 2))] * 3 + [np.zeros((4, 3))] * 3, "channels"),
    ([np.zeros((0, 2))] * 6, "0 steps"),
])
def test_bad_sequences_are_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        quiet(epochs=1).fit(bad, np.arange(6) % 2)


def test_a_dataframe_with_string_columns_sets_feature_names_in_as_sklearn(tmp_path):
    """No feature_names_in_ was set, so a DataFrame with its columns (time steps) reordered was read scrambled."""
    pd = pytest.importorskip("pandas")
    from sklearn.utils.estimator_checks import check_dataframe_column_names_consistency

    check_dataframe_column_names_consistency("SequenceClassifier", SequenceClassifier(**CHECK_SETTINGS))
    X, y = blobs(60)
    frame = pd.DataFrame(X, columns=["t0", "t1"])
    clf = quiet(epochs=1).fit(frame, y)
    assert clf.feature_names_in_.tolist() == ["t0", "t1"] and clf.feature_names_in_.dtype == object
    with pytest.raises(ValueError, match="Feature names must be in the same order"):
        clf.predict(frame[["t1", "t0"]])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        clf.predict_members(X)
    path = str(tmp_path / "clf.safetensors")
    clf.save(path)
    assert SequenceClassifier.load(path).feature_names_in_.tolist() == ["t0", "t1"]
    assert not hasattr(clf.fit(X, y), "feature_names_in_")  # refit on an array: names of the old data dropped
    assert not hasattr(quiet(epochs=1).fit(pd.DataFrame(X), y), "feature_names_in_")  # integer names: none


@pytest.mark.parametrize("X, where", [
    (np.array([["1.0", "2.0"], ["3.0", "4.0"]]), r"X: .*dtype <U3"),
    ([np.array(["1", "2"]), np.array(["3", "4", "5"])], r"X\[0\]: .*dtype <U1"),
    (np.array([[b"1", b"2"], [b"3", b"4"]]), r"X: .*dtype \|S1"),
])
def test_numbers_written_as_strings_are_refused_as_sklearn_does(X, where):
    """An array of dtype '<U3' such as ['1.0', '2.0'] was parsed into numbers without a word; scikit-learn's
    check_array refuses string and bytes arrays for a numeric estimator (numbers held as objects convert)."""
    with pytest.raises(ValueError, match=where + r"\); convert it to numbers explicitly .* or pass text=True"):
        quiet(epochs=1).fit(X, [0, 1])
    clf = quiet(epochs=1).fit(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=object), [0, 1])
    with pytest.raises(ValueError, match="expected numbers, got an array of strings"):
        clf.predict(np.array([["1.0", "2.0"]]))
