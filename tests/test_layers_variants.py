"""The variant options on the NumPy layers: masks from the layer's rng in training, the expectation in eval,
backward through them, the backend choice, repr/summary, and the formats that keep or refuse them."""
import numpy as np
import pytest

import lstmkit
from lstmkit import engine, io, ref
from lstmkit.ref import variants

from test_ref_gradcheck import ATOL, RTOL, numeric_grad, sample_indices

OPTIONS = {
    "LSTM": dict(peephole=True, input_forget=True, clip=2.0, activations=("Sigmoid", "Softsign", "Tanh"),
                 layer_norm=True, zoneout=(0.2, 0.3), recurrent_dropout=0.25, forget_bias=1.0),
    "GRU": dict(clip=2.0, zoneout=(0.0, 0.3), recurrent_dropout=0.25, linear_before_reset=False),
}


def make(mode, **kwargs):
    return getattr(lstmkit, mode)(3, 4, num_layers=2, bidirectional=True, seed=0, dtype="float64", **OPTIONS[mode],
                                  **kwargs)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_eval_is_the_reference_with_expected_masks_and_backward_checks(mode):
    layer = make(mode).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 2, 3))
    lengths = np.array([5, 2])
    out, _ = layer(x, lengths=lengths)
    config = layer.config
    expected = ref.forward(config, layer.params, x, None, lengths, None, variants.eval_masks(config, 5, 2, np.float64))
    np.testing.assert_allclose(out, expected[0], rtol=1e-10, atol=1e-12)  # the engine ran it (float64)
    d_out = rng.standard_normal(out.shape)
    grads = layer.backward(d_out)

    def loss():
        return float(np.sum(layer(x, lengths=lengths)[0] * d_out))

    checked = [("x", x, grads.input), *[(k, layer.params[k], grads.params[k]) for k in layer.params]]
    for name, array, analytic in checked:
        idx = sample_indices(array.shape, rng, k=4)
        np.testing.assert_allclose([analytic[i] for i in idx], numeric_grad(loss, array, idx), rtol=RTOL, atol=ATOL,
                                   err_msg=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_training_draws_masks_from_the_layer_rng(mode):
    x = np.random.default_rng(1).standard_normal((6, 3, 3))
    a, b = make(mode), make(mode)
    out_a, out_b = a(x)[0], b(x)[0]
    np.testing.assert_array_equal(out_a, out_b)  # same seed, same masks
    assert not np.allclose(out_a, a(x)[0])  # a new draw each call
    assert not np.allclose(out_a, a.eval()(x)[0])  # and not the expectation
    # backward goes through the masks of the last training call: the reference with those masks agrees
    layer = make(mode)
    out, _ = layer(x)
    d_out = np.random.default_rng(3).standard_normal(out.shape)
    grads = layer.backward(d_out)
    masks = layer._last[6]  # the variant masks of the last call (whichever backend ran it)
    assert masks.recurrent is not None
    again = ref.forward(layer.config, layer.params, x, variant_masks=masks)
    np.testing.assert_allclose(out, again[0], rtol=1e-10, atol=1e-12)
    dx, _, expected = ref.backward(again[2], d_out)
    np.testing.assert_allclose(grads.input, dx, rtol=1e-10, atol=1e-12)
    for name, g in expected.items():
        np.testing.assert_allclose(grads.params[name], g, rtol=1e-10, atol=1e-12, err_msg=name)


def test_variant_layers_run_the_engine_when_it_supports_them():
    layer = lstmkit.LSTM(3, 4, peephole=True, seed=0)
    assert engine.supports(layer.config) and engine.supports(lstmkit.LSTM(3, 4, forget_bias=1.0).config)
    layer(np.ones((2, 1, 3), np.float32))
    workspace = layer._last[4]  # the engine ran, keeping its tape for the backward (no reference cache)
    assert isinstance(workspace, np.ndarray) and workspace.shape == (engine.workspace_size(layer.config, 2, 1),)
    layer.eval()(np.ones((2, 1, 3), np.float32))
    assert layer._last[4] is None  # evaluation keeps nothing
    assert lstmkit.LSTM(3, 4, peephole=True, seed=0, backend="reference")(np.ones((2, 1, 3), np.float32)) is not None


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_float32_stays_float32_with_every_option(mode):
    layer = getattr(lstmkit, mode)(3, 4, seed=0, **OPTIONS[mode])
    out, _ = layer(np.ones((2, 1, 3), np.float32))
    grads = layer.backward(np.ones_like(out))
    assert out.dtype == grads.input.dtype == np.float32
    assert {g.dtype for g in grads.params.values()} == {np.dtype(np.float32)}


def test_repr_and_summary_show_the_options():
    layer = lstmkit.LSTM(3, 4, peephole=True, zoneout=(0.1, 0.2), forget_bias=1.0)
    text = repr(layer)
    assert "peephole=True" in text and "zoneout=(0.1, 0.2)" in text and "forget_bias=1.0" in text
    assert "clip" not in text and "layer_norm" not in text
    assert "peephole" not in repr(lstmkit.LSTM(3, 4))
    table = str(lstmkit.summary(lstmkit.LSTM(3, 4, peephole=True, layer_norm=True)))
    assert "peephole=True" in table and "layer_norm=True" in table
    assert "p_i, p_f, p_o (12,)" in table and "ih (16,), hh (16,), cell (4,)" in table
    assert lstmkit.summary(lstmkit.LSTM(3, 4, peephole=True, layer_norm=True)).total == \
        sum(p.size for p in lstmkit.LSTM(3, 4, peephole=True, layer_norm=True).params.values())
    assert "n/a" in table


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="peepholes"):
        lstmkit.LSTM(3, 4, peepholes=True)
    with pytest.raises(ValueError, match="peephole: only LSTM"):
        lstmkit.GRU(3, 4, peephole=True)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_safetensors_keeps_the_options_and_torch_nn_and_keras_refuse_them(mode, tmp_path):
    layer = make(mode).eval()
    path = tmp_path / "m.safetensors"
    io.write(layer, path)
    back = io.read(path).eval()
    assert back.config == layer.config
    x = np.random.default_rng(2).standard_normal((4, 2, 3))
    np.testing.assert_array_equal(layer(x)[0], back(x)[0])
    with pytest.raises(ValueError, match="torch.nn: cannot express the variant options"):
        layer.to_torch()
    with pytest.raises(ValueError, match="to_keras"):
        io.to_keras(lstmkit.LSTM(3, 4, peephole=True) if mode == "LSTM" else lstmkit.GRU(3, 4, clip=1.0))
