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


def randomize(model, seed=0):
    """Weights away from Keras' init (zero biases, orthogonal kernels), so a wrong reading shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers if hasattr(model, "layers") else [model]:
        layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()])
    return model


def bidirectional(rnn, backward, **backward_options):
    """A built Bidirectional over rnn(4) with an explicit backward layer backward(units, **options)."""
    units = backward_options.pop("units", 4)
    layer = keras.layers.Bidirectional(rnn(4, return_sequences=True),
                                       backward_layer=backward(units, return_sequences=True, go_backwards=True,
                                                               **backward_options))
    layer(x_batch_first())
    return randomize(layer)


L = keras.layers
DIFFERENT_BACKWARD = [
    (L.GRU, L.GRU, dict(reset_after=False), "reset_after=False, the forward layer reset_after=True"),
    (lambda n, **kw: L.GRU(n, reset_after=False, **kw), L.GRU, dict(), "reset_after=True, the forward layer reset_"),
    (L.LSTM, L.LSTM, dict(use_bias=False), "use_bias=False, the forward layer use_bias=True"),
    (L.LSTM, L.LSTM, dict(units=5), "units=5, the forward layer units=4"),
    (L.GRU, L.GRU, dict(activation="relu"), "activation='relu', the forward layer activation='tanh'"),
    (L.LSTM, L.LSTM, dict(recurrent_activation="hard_sigmoid"), "recurrent_activation='hard_sigmoid'"),
    (L.GRU, L.LSTM, dict(), "class='LSTM', the forward layer class='GRU'"),
]


@pytest.mark.parametrize("rnn,backward,options,message", DIFFERENT_BACKWARD,
                         ids=["reset_after", "reset_after-back", "use_bias", "units", "activation",
                              "recurrent_activation", "class"])
def test_bidirectional_backward_layer_with_other_options_is_refused_by_name(rnn, backward, options, message):
    layer = bidirectional(rnn, backward, **options)
    with pytest.raises(ValueError, match=f"Bidirectional '{layer.name}': the backward layer has {message}"):
        lstmkit.from_keras(layer)
    model = keras.Sequential([keras.Input((None, 4)), layer])
    with pytest.raises(ValueError, match="lstmkit computes both directions with one set of options"):
        lstmkit.from_keras(model)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bidirectional_with_an_equal_explicit_backward_layer_matches_keras(mode):
    # dropout and initializers do not change Keras' inference; they may differ between the directions
    rnn = getattr(L, mode)
    layer = bidirectional(rnn, rnn, dropout=0.25, kernel_initializer="zeros")
    x = x_batch_first(2)
    np.testing.assert_allclose(lstmkit.from_keras(layer)(x)[0], keras_out(layer, x), rtol=RTOL, atol=ATOL)


def shared_twice():
    inp, shared = keras.Input((None, 4)), L.LSTM(4, return_sequences=True)
    return keras.Model(inp, shared(shared(inp))), "layer 'lstm.*' is called 2 times"


def parallel_branches():
    inp = keras.Input((None, 4))
    outputs = [L.LSTM(4, return_sequences=True)(inp), L.LSTM(4, return_sequences=True)(inp)]
    return keras.Model(inp, outputs), "are not all outputs of one RNN layer"


def state_handed_on():
    inp = keras.Input((None, 4))
    y, h, c = L.LSTM(4, return_sequences=True, return_state=True)(inp)
    return keras.Model(inp, L.LSTM(4, return_sequences=True)(y, initial_state=[h, c])), "called with initial_state"


def intermediate_output():
    inp = keras.Input((None, 4))
    y = L.LSTM(4, return_sequences=True)(inp)
    return keras.Model(inp, [y, L.LSTM(4)(y)]), "are not all outputs of one RNN layer"


def two_inputs():
    a, b = keras.Input((None, 4)), keras.Input((None, 4))
    return keras.Model([a, b], L.LSTM(4)(a)), "2 inputs"


def forced_training():
    inp = keras.Input((None, 4))
    return keras.Model(inp, L.LSTM(4, dropout=0.5)(inp, training=True)), "called with training=True"


def sequential_shared(built):
    shared = L.LSTM(4, return_sequences=True)
    head = [keras.Input((None, 4))] if built else []
    return keras.Sequential(head + [shared, shared]), "layer 'lstm.*' is called 2 times"


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.a, self.b = L.LSTM(4, return_sequences=True), L.LSTM(4, return_sequences=True)

    def call(self, x):
        return self.a(x) + self.b(x)


def subclassed():
    model = Subclassed()
    model(x_batch_first())
    return model, "a subclassed model's call"


def operation_before():  # keras.ops calls are graph operations but not layers: model.layers leaves them out
    inp = keras.Input((None, 4))
    return keras.Model(inp, L.LSTM(4)(keras.ops.tanh(inp))), "operation 'tanh.*' .Tanh. in the graph"


def operation_after():
    inp = keras.Input((None, 4))
    return keras.Model(inp, keras.ops.tanh(L.LSTM(4)(inp))), "operation 'tanh.*' .Tanh. in the graph"


NOT_A_STACK = {"shared-twice": shared_twice, "parallel": parallel_branches, "initial_state": state_handed_on,
               "intermediate-output": intermediate_output, "two-inputs": two_inputs, "training=True": forced_training,
               "sequential-shared": lambda: sequential_shared(True),
               "sequential-shared-unbuilt": lambda: sequential_shared(False), "subclassed": subclassed,
               "op-before": operation_before, "op-after": operation_after}


@pytest.mark.parametrize("make", NOT_A_STACK.values(), ids=list(NOT_A_STACK))
def test_keras_models_that_are_not_a_plain_stack_are_refused(make):
    keras.utils.set_random_seed(0)
    model, message = make()
    with pytest.raises(ValueError, match=message) as refused:
        lstmkit.from_keras(model)
    assert "lstmkit reads a plain stack" in str(refused.value) or "made only of LSTM/GRU" in str(refused.value)


def test_functional_chain_with_returned_states_matches_keras():
    # states returned by a middle layer and left unused, and the last layer's states as model outputs, still read
    inp = keras.Input((None, 4))
    y, _, _ = L.LSTM(5, return_sequences=True, return_state=True)(inp)
    model = randomize(keras.Model(inp, L.LSTM(5, return_sequences=True, return_state=True)(y)), seed=3)
    x = x_batch_first(3)
    out, h, c = (np.asarray(t) for t in model.predict(x, verbose=0))
    layer = lstmkit.from_keras(model)
    got, (h_n, c_n) = layer(x)
    assert layer.config.num_layers == 2
    for mine, theirs in ((got, out), (h_n[-1], h), (c_n[-1], c)):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL)


def test_unbuilt_keras_layer_is_refused_by_name():
    with pytest.raises(ValueError, match="LSTM 'lstm.*': not built"):
        lstmkit.from_keras(L.LSTM(4))


def test_stateful_keras_layer_is_refused_by_name():
    # Keras carries a stateful layer's state across calls; the lstmkit layer would start each call from zeros
    model = keras.Sequential([keras.Input((3, 4), batch_size=2), L.GRU(5, stateful=True)])
    with pytest.raises(ValueError, match="GRU 'gru.*': stateful=True"):
        lstmkit.from_keras(model)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_imported_layers_are_in_evaluation_mode_like_keras_predict(mode, tmp_path):
    # Keras' dropout/recurrent_dropout act only under training=True; predict and a plain call are inference
    rnn = getattr(L, mode)
    stack = [L.Bidirectional(rnn(5, return_sequences=True, dropout=0.5, recurrent_dropout=0.5)) for _ in range(2)]
    model = keras.Sequential([keras.Input((None, 4))] + stack)
    randomize(model, seed=4)
    x = x_batch_first(4)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    for layer in (lstmkit.from_keras(model), lkkeras.load(tmp_path / "m.keras")):
        assert layer.training is False
        first, second = layer(x)[0], layer(x)[0]
        np.testing.assert_array_equal(first, second)
        np.testing.assert_allclose(first, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_a_float64_model_stays_float64_in_keras_bidirectional_too(mode):
    """The Bidirectional wrapper took Keras' default float32 policy and cast a float64 model's values around
    its float64 layers (2.3e-8 off, float32 out): it gets the model's dtype."""
    layer = getattr(lstmkit, mode)(3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype="float64").eval()
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    out = keras.ops.convert_to_numpy(lstmkit.to_keras(layer)(x))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, layer(x)[0], rtol=0, atol=1e-12)
