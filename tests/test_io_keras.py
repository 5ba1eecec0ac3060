"""Keras leg: live layers and .keras files both ways, Keras' own outputs matched; refused variants."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.io import keras as lkkeras  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6

SWEEP = [
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True)),
    ("LSTM", dict(bias=False)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(num_layers=2, bias=False)),
]
IDS = [m + "".join(f"-{k}={v}" for k, v in kw.items()) for m, kw in SWEEP]


def keras_out(model, x):
    return np.asarray(model(x).detach().cpu())


def x_batch_first(seed=0):
    return np.random.default_rng(seed).standard_normal((3, 7, 4)).astype(np.float32)


def last_step(layer, x):
    """What Keras returns without return_sequences: each direction's final h of the last layer, concatenated."""
    _, state = layer(x)
    h = state[0] if layer.config.mode == "LSTM" else state
    return np.concatenate(list(h[-layer.config.num_directions:]), axis=-1)


@pytest.mark.parametrize("mode,kw", SWEEP, ids=IDS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstmkit_to_keras_matches(mode, kw, return_sequences):
    layer = getattr(lstmkit, mode)(4, 6, batch_first=True, seed=0, **kw)
    for name in layer.params:  # non-trivial biases so the bias_ih + bias_hh merge is exercised
        layer.params[name] = layer.params[name] + np.float32(0.05)
    x = x_batch_first()
    model = lstmkit.to_keras(layer, return_sequences=return_sequences)
    expected = layer(x)[0] if return_sequences else last_step(layer, x)
    np.testing.assert_allclose(keras_out(model, x), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode,kw", SWEEP, ids=IDS)
def test_keras_saved_file_loads_with_keras_outputs(mode, kw, tmp_path):
    keras.utils.set_random_seed(0)
    rnn = lambda seq: getattr(keras.layers, mode)(6, return_sequences=seq, use_bias=kw.get("bias", True),  # noqa
                                                  bias_initializer="random_uniform")
    wrap = (lambda r: keras.layers.Bidirectional(r)) if kw.get("bidirectional") else (lambda r: r)
    layers = [wrap(rnn(k < kw.get("num_layers", 1) - 1)) for k in range(kw.get("num_layers", 1))]
    model = keras.Sequential([keras.Input((None, 4))] + layers)
    model.save(tmp_path / "m.keras")
    layer = lstmkit.io.read(tmp_path / "m.keras")
    x = x_batch_first(1)
    np.testing.assert_allclose(last_step(layer, x), keras_out(model, x), rtol=RTOL, atol=ATOL)
    # and back: lstmkit writes a .keras file Keras loads with the same outputs
    lkkeras.save(layer, tmp_path / "back.keras", return_sequences=False)
    again = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(keras_out(again, x), keras_out(model, x), rtol=RTOL, atol=ATOL)


def test_single_keras_layers_and_the_bias_convention():
    keras.utils.set_random_seed(1)
    lstm = keras.layers.LSTM(5, return_sequences=True, bias_initializer="random_uniform")
    x = x_batch_first()
    expected = keras_out(lstm, x)
    layer = lstmkit.from_keras(lstm)
    np.testing.assert_allclose(layer(x)[0], expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(layer.params["bias_hh_l0"], 0)  # Keras' one bias is torch's bias_ih
    bi = keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True))
    expected = keras_out(bi, x)
    np.testing.assert_allclose(lstmkit.from_keras(bi)(x)[0], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_reset_after_false_is_linear_before_reset_false_both_ways(bidirectional):
    x = x_batch_first()
    gru = keras.layers.GRU(5, reset_after=False, return_sequences=True)
    keras_layer = keras.layers.Bidirectional(gru) if bidirectional else gru
    expected = keras_out(keras_layer, x)
    layer = lstmkit.from_keras(keras_layer)
    assert layer.config.linear_before_reset is False
    np.testing.assert_allclose(layer(x)[0], expected, rtol=RTOL, atol=ATOL)
    back = lstmkit.to_keras(layer)
    rnn = back.layers[-1].forward_layer if bidirectional else back.layers[-1]
    assert rnn.reset_after is False
    np.testing.assert_allclose(keras_out(back, x), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="to_keras: Keras"):
        lstmkit.to_keras(lstmkit.GRU(4, 5, linear_before_reset=False, clip=2.0))


def test_unsupported_keras_variants_are_refused_with_the_reason():
    x = x_batch_first()
    relu = keras.layers.LSTM(5, activation="relu")
    relu(x)
    with pytest.raises(ValueError, match="activation=relu"):
        lstmkit.from_keras(relu)
    summed = keras.layers.Bidirectional(keras.layers.LSTM(5), merge_mode="sum")
    summed(x)
    with pytest.raises(ValueError, match="merge_mode='sum'"):
        lstmkit.from_keras(summed)
    with_head = keras.Sequential([keras.Input((None, 4)), keras.layers.LSTM(5), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match=r"Dense"):
        lstmkit.from_keras(with_head)
    with pytest.raises(ValueError, match="proj_size=2"):
        lstmkit.to_keras(lstmkit.LSTM(4, 5, proj_size=2))


def test_bad_keras_file_is_refused(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ValueError, match="not a readable .keras model"):
        lstmkit.io.read(bad)
