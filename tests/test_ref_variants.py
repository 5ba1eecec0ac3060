"""The variant cells of docs/variants.md in the reference: BPTT against float64 central differences for every
option alone and combined, the plain case unchanged, a few equations checked by hand, Keras and torch where
they compute the same function, and the config's checks and normalisation."""
import json
import os
import zlib

import numpy as np
import pytest

from lstmkit import ref
from lstmkit.params import RNNConfig, init_params, param_shapes
from lstmkit.ref import activations, gru, lstm, variants
from lstmkit.ref.lstm import sigmoid

os.environ.setdefault("KERAS_BACKEND", "torch")  # as lstmkit.io.keras runs it: lstmkit[keras] brings torch

from test_ref_gradcheck import ATOL, RTOL, numeric_grad, sample_indices

ACTIVATION_NAMES = tuple(activations.TABLE)
SWEEP = [
    dict(mode="LSTM", peephole=True),
    dict(mode="LSTM", input_forget=True),
    dict(mode="LSTM", clip=0.4),
    dict(mode="LSTM", layer_norm=True),
    dict(mode="LSTM", zoneout=(0.3, 0.4)),
    dict(mode="LSTM", recurrent_dropout=0.4),
    dict(mode="LSTM", forget_bias=1.0, peephole=True),
    dict(mode="LSTM", peephole=True, input_forget=True, clip=0.8),
    dict(mode="LSTM", proj_size=2, peephole=True, zoneout=(0.2, 0.3), layer_norm=True),
    dict(mode="LSTM", proj_size=3, recurrent_dropout=0.3, clip=1.0, activations=("HardSigmoid", "Softsign", "Elu")),
    dict(mode="LSTM", peephole=True, input_forget=True, clip=1.0, layer_norm=True, zoneout=(0.3, 0.3),
         recurrent_dropout=0.3, activations=("Sigmoid", ("ScaledTanh", 0.8, 1.2), "Softplus")),
    dict(mode="GRU", clip=0.4),
    dict(mode="GRU", layer_norm=True),
    dict(mode="GRU", zoneout=(0.0, 0.4)),
    dict(mode="GRU", recurrent_dropout=0.4),
    dict(mode="GRU", linear_before_reset=False),
    dict(mode="GRU", linear_before_reset=False, recurrent_dropout=0.3, zoneout=(0.0, 0.2), clip=0.7),
    dict(mode="GRU", layer_norm=True, zoneout=(0.0, 0.3), recurrent_dropout=0.2, activations=("HardSigmoid", "Elu")),
]
# each activation as the LSTM's cell and hidden function and as the GRU's cell function (an unbounded
# function as a gate makes the state grow without bound, beyond what finite differences check to 1e-6;
# the gate position runs the same table, and every derivative is checked on its own below)
EACH_ACTIVATION = [dict(mode="LSTM", activations=("Sigmoid", name, name)) for name in ACTIVATION_NAMES]
EACH_ACTIVATION += [dict(mode="GRU", activations=("Sigmoid", name), bias=False) for name in ACTIVATION_NAMES]
MASKED = [s for s in SWEEP if "zoneout" in s or "recurrent_dropout" in s]  # where training differs from eval
BPTT_CASES = ([(s, True) for s in SWEEP] + [(s, False) for s in MASKED]
              + [pytest.param(s, True, marks=pytest.mark.slow) for s in EACH_ACTIVATION])


def spec_id(spec):
    return "-".join(f"{k}={v}" for k, v in spec.items())


def random_params(config, rng):
    """init_params with layer-norm gains and shifts moved off 1 and 0, so their gradients are exercised."""
    params = init_params(config, seed=1, dtype="float64")
    for name, value in params.items():
        if name.startswith("ln_"):
            value += 0.3 * rng.standard_normal(value.shape)
    return params


@pytest.mark.parametrize("spec,training", BPTT_CASES,
                         ids=lambda v: spec_id(v) if isinstance(v, dict) else ("train" if v else "eval"))
def test_bptt_matches_finite_differences(spec, training):
    rng = np.random.default_rng(zlib.crc32(spec_id(spec).encode()))  # str hash() changes per process
    config = RNNConfig(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, **spec)
    params = random_params(config, rng)
    T, B = 3, 3
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([3, 0, 2])
    state0 = tuple(rng.standard_normal(s.shape) for s in ref.zero_state(config, B, np.float64))
    masks = variants.sample_masks(config, T, B, rng, np.float64) if training else None

    out, final, cache = ref.forward(config, params, x, state0, lengths, variant_masks=masks)
    d_out = rng.standard_normal(out.shape)
    d_final = tuple(rng.standard_normal(s.shape) for s in final)

    def loss():
        o, f, _ = ref.forward(config, params, x, state0, lengths, variant_masks=masks)
        return float(np.sum(o * d_out) + sum(np.sum(a * b) for a, b in zip(f, d_final)))

    dx, d_state0, grads = ref.backward(cache, d_out, d_final)
    assert set(grads) == set(params) == set(param_shapes(config))
    checks = [("input", x, dx), *[(n, params[n], grads[n]) for n in params],
              *[(f"state0[{j}]", s, ds) for j, (s, ds) in enumerate(zip(state0, d_state0))]]
    for name, array, analytic in checks:
        idx = sample_indices(array.shape, rng, k=5)
        np.testing.assert_allclose([analytic[i] for i in idx], numeric_grad(loss, array, idx), rtol=RTOL, atol=ATOL,
                                   err_msg=name)
    assert np.all(out[:, 1] == 0) and np.all(dx[:, 1] == 0)  # the zero-length sequence


@pytest.mark.parametrize("spec", [s for s in SWEEP if "activations" not in s or s["mode"] == "LSTM"][:12],
                         ids=spec_id)
def test_cell_backward_matches_finite_differences(spec):
    rng = np.random.default_rng(3)
    config = RNNConfig(input_size=3, hidden_size=4, **spec)
    w = {k[:-3]: v for k, v in random_params(config, rng).items()}
    cell = variants.Cell(config)
    masks = variants.sample_masks(config, 1, 2, rng, np.float64).at(0, 0)
    sizes = (config.output_size, 4) if config.mode == "LSTM" else (4,)
    x = rng.standard_normal((2, 3))
    state = tuple(rng.standard_normal((2, n)) for n in sizes)
    d_new = tuple(rng.standard_normal((2, n)) for n in sizes)

    def loss():
        new, _ = cell.cell_forward(x, state, w, *masks)
        return float(sum(np.sum(a * b) for a, b in zip(new, d_new)))

    _, cache = cell.cell_forward(x, state, w, *masks)
    dx, d_prev, grads = cell.cell_backward(d_new, cache, w)
    assert set(grads) == set(w)
    for name, array, analytic in [("x", x, dx), *[(f"state{j}", s, d) for j, (s, d) in enumerate(zip(state, d_prev))],
                                  *[(k, w[k], grads[k]) for k in w]]:
        idx = sample_indices(array.shape, rng, k=16)
        np.testing.assert_allclose([analytic[i] for i in idx], numeric_grad(loss, array, idx), rtol=RTOL, atol=ATOL,
                                   err_msg=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_options_off_are_the_plain_cells(mode):
    rng = np.random.default_rng(0)
    explicit_off = dict(activations=activations.DEFAULTS[mode], zoneout=[0, 0], recurrent_dropout=0, layer_norm=False,
                        clip=None)
    config = RNNConfig(mode, 3, 4, num_layers=2, bidirectional=True, **explicit_off)
    plain = RNNConfig(mode, 3, 4, num_layers=2, bidirectional=True)
    assert config == plain and config.is_plain and config.to_dict() == plain.to_dict()
    params = init_params(plain, seed=0, dtype="float64")
    x = rng.standard_normal((5, 2, 3))
    out, final, cache = ref.forward(config, params, x, lengths=[5, 3], variant_masks=variants.eval_masks(config, 5, 2,
                                                                                                          np.float64))
    assert cache["cell"] is (lstm if mode == "LSTM" else gru)  # the textbook cell, bit for bit
    # the variant cell with every option off computes the same function (to rounding: sums are grouped differently)
    w = ref.rnn.layer_weights(params, 0, 0)
    state = tuple(s[0] for s in ref.zero_state(plain, 2, np.float64))
    state = tuple(s + rng.standard_normal(s.shape) for s in state)
    textbook, t_cache = (lstm if mode == "LSTM" else gru).cell_forward(x[0], state, w)
    variant, v_cache = variants.Cell(plain).cell_forward(x[0], state, w)
    for a, b in zip(textbook, variant):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
    d = tuple(rng.standard_normal(s.shape) for s in state)
    t_back = (lstm if mode == "LSTM" else gru).cell_backward(d, t_cache, w)
    v_back = variants.Cell(plain).cell_backward(d, v_cache, w)
    np.testing.assert_allclose(t_back[0], v_back[0], rtol=1e-13, atol=1e-14)
    for name in t_back[2]:
        np.testing.assert_allclose(t_back[2][name], v_back[2][name], rtol=1e-13, atol=1e-14, err_msg=name)


def test_forget_bias_is_initialisation_only():
    config = RNNConfig("LSTM", 3, 4, forget_bias=1.0)
    assert config.is_plain and config.to_dict()["forget_bias"] == 1.0
    params = init_params(config, seed=0)
    np.testing.assert_array_equal(params["bias_ih_l0"][4:8], 1.0)
    np.testing.assert_array_equal(params["bias_hh_l0"][4:8], 0.0)
    others = init_params(RNNConfig("LSTM", 3, 4), seed=0)
    np.testing.assert_array_equal(params["bias_ih_l0"][:4], others["bias_ih_l0"][:4])
    ln = init_params(RNNConfig("LSTM", 3, 4, layer_norm=True, peephole=True), seed=0)
    np.testing.assert_array_equal(ln["ln_ih_weight_l0"], 1.0)
    np.testing.assert_array_equal(ln["ln_cell_bias_l0"], 0.0)
    np.testing.assert_array_equal(ln["weight_ih_l0"], others["weight_ih_l0"])


def _one_step(config, x, state, seed=0):
    w = {k[:-3]: v for k, v in init_params(config, seed=seed, dtype="float64").items()}
    return w, variants.Cell(config).cell_forward(x, state, w)[0]


def _lstm_step_by_hand(**option):
    """One variant LSTM step from a random state, and its plain pre-activations z (B, 4H) computed by hand."""
    rng = np.random.default_rng(1)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    w, (h_new, c_new) = _one_step(RNNConfig("LSTM", 3, 4, **option), x, (h, c))
    z = x @ w["weight_ih"].T + h @ w["weight_hh"].T + w["bias_ih"] + w["bias_hh"]
    return w, c, z, h_new, c_new


def test_input_forget_couples_f_to_one_minus_i():
    w, c, z, h_new, c_new = _lstm_step_by_hand(input_forget=True)
    i, g = sigmoid(z[:, :4]), np.tanh(z[:, 8:12])
    np.testing.assert_allclose(c_new, (1 - i) * c + i * g, rtol=1e-13)
    np.testing.assert_allclose(h_new, sigmoid(z[:, 12:]) * np.tanh(c_new), rtol=1e-13)


def test_peephole_lets_the_gates_see_the_cell():
    w, c, z, h_new, c_new = _lstm_step_by_hand(peephole=True)
    p_i, p_f, p_o = np.split(w["peephole"], 3)
    i, f, g = sigmoid(z[:, :4] + p_i * c), sigmoid(z[:, 4:8] + p_f * c), np.tanh(z[:, 8:12])
    np.testing.assert_allclose(c_new, f * c + i * g, rtol=1e-13)
    np.testing.assert_allclose(h_new, sigmoid(z[:, 12:] + p_o * c_new) * np.tanh(c_new), rtol=1e-13)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_clip_bounds_every_gate(mode):
    rng = np.random.default_rng(3)
    config = RNNConfig(mode, 3, 4, clip=0.1)
    x = 100 * rng.standard_normal((50, 3))  # pre-activations far beyond the clip
    state = tuple(np.zeros((50, 4)) for _ in range(2 if mode == "LSTM" else 1))
    _, new = _one_step(config, x, state)
    # from a zero state: LSTM c' = i ⊙ g, GRU h' = (1 − z) ⊙ n, so the bounds multiply
    bound = sigmoid(0.1) * np.tanh(0.1) if mode == "LSTM" else (1 - sigmoid(-0.1)) * np.tanh(0.1)
    assert np.abs(new[-1]).max() <= bound + 1e-15
    assert np.abs(new[-1]).max() > 0.9 * bound  # and the bound is reached


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_zoneout_mask_of_ones_keeps_the_state(mode):
    rng = np.random.default_rng(4)
    config = RNNConfig(mode, 3, 4, zoneout=(0.5 if mode == "LSTM" else 0.0, 0.5))
    params = init_params(config, seed=0, dtype="float64")
    T, B = 6, 2
    state0 = tuple(rng.standard_normal(s.shape) for s in ref.zero_state(config, B, np.float64))
    ones = variants.VariantMasks(None, [np.ones((T, B, 4))] if mode == "LSTM" else None, [np.ones((T, B, 4))])
    out, final, _ = ref.forward(config, params, rng.standard_normal((T, B, 3)), state0, variant_masks=ones)
    for s, s0 in zip(final, state0):
        np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(out, np.broadcast_to(state0[0][0], out.shape))


def test_eval_uses_the_expectation_and_no_recurrent_dropout():
    config = RNNConfig("LSTM", 3, 4, zoneout=(0.2, 0.3), recurrent_dropout=0.5)
    assert variants.eval_masks(config, 5, 2, np.float32).zoneout_c[0].dtype == np.float32
    m = variants.eval_masks(config, 5, 2, np.float64)
    assert m.recurrent is None
    assert np.all(m.zoneout_c[0] == 0.2) and np.all(m.zoneout_h[0] == 0.3)
    params = init_params(config, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    default = ref.forward(config, params, x)[0]
    np.testing.assert_array_equal(default, ref.forward(config, params, x, variant_masks=m)[0])
    trained = variants.sample_masks(config, 5, 2, np.random.default_rng(0), np.float64)
    keep = trained.recurrent[0] * (1 - 0.5)
    assert set(np.unique(keep)) <= {0.0, 1.0} and set(np.unique(trained.zoneout_c[0])) <= {0.0, 1.0}
    assert trained.recurrent[0].shape == (2, 4) and trained.zoneout_h[0].shape == (5, 2, 4)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_derivatives_match_finite_differences(name):
    spec = activations.normalise(name)
    z = np.linspace(-3, 3, 61) + 0.013  # off every kink
    y = activations.apply(spec, z)
    numeric = (activations.apply(spec, z + 1e-6) - activations.apply(spec, z - 1e-6)) / 2e-6
    np.testing.assert_allclose(activations.derivative(spec, z, y), numeric, rtol=1e-6, atol=1e-8)
    z32 = z.astype(np.float32)  # float32 stays float32, forward and derivative
    y32 = activations.apply(spec, z32)
    assert y32.dtype == np.float32 and activations.derivative(spec, z32, y32).dtype == np.float32


def test_activation_values_and_right_hand_kinks():
    z = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_allclose(activations.apply(("HardSigmoid", 0.2, 0.5), z), [0.3, 0.5, 0.7])
    np.testing.assert_allclose(activations.apply(("ScaledTanh", 2.0, 0.5), z), 2 * np.tanh(0.5 * z))
    np.testing.assert_allclose(activations.apply(("Affine", 3.0, 1.0), z), [-2, 1, 4])
    np.testing.assert_allclose(activations.apply(("ThresholdedRelu", 0.5, 0.0), z), [0, 0, 1])
    np.testing.assert_array_equal(activations.derivative(("Relu", 0.0, 0.0), z, None), [0, 1, 1])
    np.testing.assert_array_equal(activations.derivative(("ThresholdedRelu", 1.0, 0.0), z, None), [0, 0, 1])
    np.testing.assert_allclose(activations.apply(("Softplus", 0, 0), np.array([1000.0])), [1000.0])


def test_gru_without_linear_before_reset_matches_keras_reset_after_false():
    keras = pytest.importorskip("keras")
    from lstmkit.io.gates import reorder

    rng = np.random.default_rng(5)
    config = RNNConfig("GRU", 3, 4, linear_before_reset=False)
    params = init_params(config, seed=0, dtype="float64")
    x = rng.standard_normal((2, 6, 3))  # (B, T, I), Keras' layout
    layer = keras.layers.GRU(4, reset_after=False, return_sequences=True, dtype="float64")
    layer.build((None, 6, 3))
    layer.set_weights([reorder(params["weight_ih_l0"], "GRU", "torch", "keras").T,
                       reorder(params["weight_hh_l0"], "GRU", "torch", "keras").T,
                       reorder(params["bias_ih_l0"] + params["bias_hh_l0"], "GRU", "torch", "keras")])
    expected = keras.ops.convert_to_numpy(layer(x))
    out, _, _ = ref.forward(config, params, x.transpose(1, 0, 2))
    # Keras on torch agrees to ~1e-7 only (some float32 inside); linear_before_reset=True would differ by ~1e-1
    np.testing.assert_allclose(out.transpose(1, 0, 2), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode,extra", [("LSTM", dict(proj_size=2)), ("LSTM", {}), ("GRU", {})])
def test_variant_path_without_effect_matches_torch(mode, extra):
    """A clip that never binds and explicit default activations run the variant cells; torch.nn must agree."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    config = RNNConfig(mode, 3, 5, num_layers=2, bidirectional=True, clip=1e6, **extra)
    assert not config.is_plain
    params = init_params(config, seed=0, dtype="float64")
    module = getattr(torch.nn, mode)(3, 5, 2, bidirectional=True, **extra).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    x = rng.standard_normal((6, 2, 3))
    out, final, _ = ref.forward(config, params, x)
    with torch.no_grad():
        expected, expected_final = module(torch.from_numpy(x))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-12, atol=1e-13)
    expected_final = expected_final if mode == "LSTM" else (expected_final,)
    for a, b in zip(final, expected_final):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-12, atol=1e-13)


def test_config_normalises_and_survives_json():
    config = RNNConfig("LSTM", 3, 4, peephole=True, activations=["sigmoid", ("hardsigmoid", 0.3), "ELU"],
                       zoneout=[0.1, 0.2], clip=3, recurrent_dropout=0.25)
    assert config.activations == (("Sigmoid", 0.0, 0.0), ("HardSigmoid", 0.3, 0.5), ("Elu", 1.0, 0.0))
    assert config.zoneout == (0.1, 0.2) and config.clip == 3.0 and not config.is_plain
    assert RNNConfig(**json.loads(json.dumps(config.to_dict()))) == config
    assert list(RNNConfig("GRU", 3, 4).to_dict()) == ["mode", "input_size", "hidden_size", "num_layers", "bias",
                                                      "batch_first", "dropout", "bidirectional", "proj_size"]
    assert RNNConfig("GRU", 3, 4, linear_before_reset=False).to_dict()["linear_before_reset"] is False


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="GRU", peephole=True), "peephole: only LSTM"),
    (dict(mode="GRU", input_forget=True), "input_forget: only LSTM"),
    (dict(mode="GRU", forget_bias=1.0), "forget_bias: only LSTM"),
    (dict(mode="LSTM", linear_before_reset=False), "linear_before_reset: only GRU"),
    (dict(mode="GRU", zoneout=(0.1, 0.1)), "z_c must be 0"),
    (dict(mode="GRU", layer_norm=True, linear_before_reset=False), "layer_norm"),
    (dict(mode="LSTM", clip=0), "clip: expected a number > 0"),
    (dict(mode="LSTM", clip=-1.0), "clip: expected a number > 0"),
    (dict(mode="LSTM", clip=True), "clip"),
    (dict(mode="LSTM", zoneout=(0.1, 1.0)), "zoneout: expected each in \\[0, 1\\)"),
    (dict(mode="LSTM", zoneout=0.1), "zoneout: expected a pair"),
    (dict(mode="LSTM", zoneout=(-0.1, 0.0)), "zoneout"),
    (dict(mode="LSTM", recurrent_dropout=1.0), "recurrent_dropout: expected a number in \\[0, 1\\)"),
    (dict(mode="LSTM", peephole="yes"), "peephole: expected True or False"),
    (dict(mode="LSTM", activations=("Sigmoid", "Tanh")), "activations: expected 3 activations"),
    (dict(mode="GRU", activations=("Sigmoid", "Tanh", "Tanh")), "activations: expected 2 activations"),
    (dict(mode="GRU", activations="Tanh"), "activations: expected 2"),
    (dict(mode="GRU", activations=("Sigmoid", "Swish")), "activations\\[1\\]: expected one of"),
    (dict(mode="GRU", activations=("Sigmoid", ("Tanh", 2.0))), "Tanh takes 0 of alpha/beta"),
    (dict(mode="GRU", activations=("Sigmoid", ("Elu", float("nan")))), "finite"),
    (dict(mode="GRU", activations=(3, "Tanh")), "activations\\[0\\]: expected a name"),
])
def test_config_refuses_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RNNConfig(input_size=3, hidden_size=4, **kwargs)
