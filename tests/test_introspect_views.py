"""Derived views of a trace: saturation, correlation, active units, PCA, forget resets, text units."""
import numpy as np
import pytest

import lstmkit
from lstmkit.introspect import views


def forced_lstm(f_bias):
    """An LSTM whose forget gate is pinned by a large bias (σ(±30) is 0 or 1 to float precision)."""
    layer = lstmkit.LSTM(3, 4, seed=0, dtype="float64")
    layer.params["bias_ih_l0"][4:8] = f_bias
    return layer


def test_saturation_counts_shares_of_valid_steps():
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    sat = views.saturation(forced_lstm(30.0).trace(x, lengths=[6, 2]))
    assert set(sat[0][0]) == {"i", "f", "o"}  # g is a tanh candidate, not a gate
    np.testing.assert_array_equal(sat[0][0]["f"].high, 1.0)
    np.testing.assert_array_equal(sat[0][0]["f"].low, 0.0)
    sat = views.saturation(forced_lstm(-30.0).trace(x))
    np.testing.assert_array_equal(sat[0][0]["f"].total, 1.0)
    # by hand on a free gate: shares over the 8 valid (t, b) only
    tr = lstmkit.GRU(3, 4, seed=1, dtype="float64").trace(x * 5, lengths=[6, 2])
    z = tr.layers[0][0].gates["z"]
    want = np.mean(z[tr.valid] > 0.9, axis=0)
    np.testing.assert_allclose(views.saturation(tr)[0][0]["z"].high, want)


def test_forget_resets_find_the_steps_where_the_cell_is_rewritten():
    x = np.random.default_rng(0).standard_normal((5, 1, 3))
    assert views.forget_resets(forced_lstm(30.0).trace(x)) == []
    resets = views.forget_resets(forced_lstm(-30.0).trace(x))
    assert [t for t, _ in resets] == [0, 1, 2, 3, 4] and all(m < 1e-9 for _, m in resets)


def test_correlation_top_units_and_pca():
    rng = np.random.default_rng(3)
    layer = lstmkit.LSTM(3, 6, num_layers=2, bidirectional=True, seed=2, dtype="float64")
    tr = layer.trace(rng.standard_normal((9, 3, 3)), lengths=[9, 5, 7])
    corr = views.unit_input_correlation(tr, layer=1, direction=1)
    assert corr.shape == (6, 12) and np.all(np.abs(corr) <= 1 + 1e-12)
    h = tr.layers[1][1].h[tr.valid]
    inp = tr.layer_input(1)[tr.valid]
    np.testing.assert_allclose(corr[2, 7], np.corrcoef(h[:, 2], inp[:, 7])[0, 1], atol=1e-12)

    top = views.top_units(tr, [0, 6], k=3, batch=1)
    assert top[6] == []  # sequence 1 has ended at step 6
    row = tr.layers[-1][0].h[0, 1]
    assert [u for u, _ in top[0]] == list(np.argsort(-np.abs(row))[:3])

    p = views.pca(tr, k=6)
    assert p.points.shape == (9, 6) and abs(p.explained.sum() - 1) < 1e-9
    assert np.all(np.diff(p.explained) <= 1e-15)
    v = tr.layers[-1][0].h
    back = p.points @ p.components + v[tr.valid].mean(0)  # all axes: the states come back exactly
    np.testing.assert_allclose(back, v[:, 0], atol=1e-12)
    assert np.isnan(views.pca(tr, batch=1).points[5:]).all()


def test_char_responses_average_a_unit_per_character():
    text = "abcabca"
    vocab = sorted(set(text))
    x = np.zeros((len(text), 1, len(vocab)))
    x[np.arange(len(text)), 0, [vocab.index(c) for c in text]] = 1
    tr = lstmkit.GRU(3, 4, seed=0, dtype="float64").trace(x)
    got = views.char_responses(tr, text, unit=2)
    a = tr.layers[0][0].h[:, 0, 2]
    means = {c: a[[i for i, ch in enumerate(text) if ch == c]].mean() for c in vocab}
    assert [c for c, _, _ in got] == sorted(vocab, key=lambda c: -means[c])
    assert dict((c, n) for c, _, n in got) == {"a": 3, "b": 2, "c": 2}
    assert got[0][1] == pytest.approx(means[got[0][0]], abs=1e-12)


def test_saturation_follows_the_gates_activation_range():
    """Saturation is a share of each gate's activation range (docs/variants.md's activations=): a Softsign gate
    lives in (−1, 1), so its middle (0) is not "saturated low", and its zones are below −0.8 / above 0.8; a gate
    with an unbounded activation (Relu) has no zone and is left out, and the findings say so. The plots take
    the same ranges (a ScaledTanh(3, 1) candidate spans ±3)."""
    from lstmkit.introspect import plots

    x = np.random.default_rng(0).standard_normal((12, 2, 3)).astype(np.float64)
    soft = lstmkit.LSTM(3, 6, seed=0, dtype="float64", activations=("Softsign", ("ScaledTanh", 3.0, 1.0), "Tanh"))
    tr = soft.eval().trace(x)
    assert views.gate_ranges(soft.config) == {"i": (-1.0, 1.0), "f": (-1.0, 1.0), "g": (-3.0, 3.0), "o": (-1.0, 1.0)}
    sat = views.saturation(tr)[0][0]
    assert set(sat) == {"i", "f", "o"} and sat["i"].thresholds == pytest.approx((-0.8, 0.8))
    gate_i = tr.layers[0][0].gates["i"][tr.valid]
    np.testing.assert_allclose(sat["i"].low, (gate_i < -0.8).mean(0))
    assert abs(gate_i).max() < 0.8 and not sat["i"].total.any()  # values near 0: the middle of Softsign
    assert "(< 0.1 or > 0.9)" not in str(views.findings(tr))
    figure = plots.saturation_histograms(tr, 0, 0)
    assert figure.axes[0].get_xlim()[0] < -0.9  # the histogram spans (−1, 1), negative values included
    heat = plots.state_heatmaps(tr, 0, 0)
    assert heat.axes[2].images[0].get_clim() == (-3.0, 3.0)  # g's colours span ScaledTanh(3, 1)'s range

    relu = lstmkit.GRU(3, 4, seed=0, dtype="float64", activations=("Relu", "Tanh")).eval()
    tr = relu.trace(x)
    assert views.saturation(tr) == [[{}]]
    text = str(views.findings(tr))
    assert "gate(s) r, z: activation Relu is unbounded" in text
    assert not any(name.startswith("saturation") for name in plots.all_figures(tr))


def test_gradient_curve_averages_the_sequences_running_at_each_step():
    """With lengths, a padded step's zero gradient is not a vanishing one: the curve at step t averages the
    sequences still running there (NaN where none runs), not every row of the batch."""
    x = np.random.default_rng(3).standard_normal((6, 3, 2))
    tr = lstmkit.LSTM(2, 3, seed=0, dtype="float64").trace(x, lengths=[6, 1, 4])
    flow = views.gradient_norms(tr)
    norms = flow.h[0][0]
    want = [norms[t, [b for b, n in enumerate([6, 1, 4]) if t < n]].mean() for t in range(6)]
    np.testing.assert_allclose(flow.curve(), want, rtol=1e-12)
    tr = lstmkit.LSTM(2, 3, seed=0, dtype="float64").trace(x, lengths=[4, 1, 4])
    curve = views.gradient_norms(tr).curve()
    assert np.isnan(curve[4:]).all() and np.isfinite(curve[:4]).all()
