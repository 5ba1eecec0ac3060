"""lstmkit.torch.equations (the variants' equations in torch ops) against the NumPy reference, float64.

Same weights, states, lengths and masks on both sides; the two compute the same arithmetic in a different
order, so they agree to a few ulps of float64 per step: 1e-12 relative to the output's scale over these
short sequences (T ≤ 6) leaves a margin of ~100× over the differences seen (≤ 1e-14).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lstmkit.params import RNNConfig, init_params  # noqa: E402
from lstmkit.ref import rnn as ref_rnn  # noqa: E402
from lstmkit.ref.variants import VariantMasks, sample_masks  # noqa: E402
from lstmkit.torch import equations  # noqa: E402

TOL = 1e-12
OPTIONS = [
    ("LSTM", {}),
    ("LSTM", dict(proj_size=2, bidirectional=True, num_layers=2)),
    ("LSTM", dict(bias=False, num_layers=2)),
    ("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.3, 0.2), recurrent_dropout=0.25)),
    ("LSTM", dict(input_forget=True, clip=0.7, activations=("HardSigmoid", "Softsign", "Elu"), proj_size=3)),
    ("LSTM", dict(peephole=True, zoneout=(0.2, 0.0), bidirectional=True, num_layers=2)),
    ("LSTM", dict(activations=(("LeakyRelu", 0.1), ("ScaledTanh", 1.5, 0.7), "Softplus"), clip=2.0)),
    ("LSTM", dict(activations=("Sigmoid", ("Affine", 0.5, 0.1), ("ThresholdedRelu", 0.2)), layer_norm=True,
                  proj_size=2, bidirectional=True)),
    ("LSTM", dict(activations=("Relu", "Tanh", "Tanh"), input_forget=True, recurrent_dropout=0.4)),
    ("GRU", {}),
    ("GRU", dict(bidirectional=True, num_layers=3, bias=False)),
    ("GRU", dict(layer_norm=True, zoneout=(0.0, 0.3), recurrent_dropout=0.2, bidirectional=True)),
    ("GRU", dict(linear_before_reset=False, clip=0.8, recurrent_dropout=0.3, num_layers=2)),
    ("GRU", dict(linear_before_reset=False, bias=False, activations=("HardSigmoid", "Softsign"))),
]


def _case(mode, options, seed=0, T=6, B=4, n_in=3, H=5):
    config = RNNConfig(mode, n_in, H, **options)
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in init_params(config, seed, "float64").items()}
    x = rng.standard_normal((T, B, n_in))
    K, D, P = config.num_layers * config.num_directions, config.num_directions, config.output_size
    state0 = (rng.standard_normal((K, B, P)),) + ((rng.standard_normal((K, B, H)),) if mode == "LSTM" else ())
    return config, params, x, state0, rng, D, P


def _t(a):
    return None if a is None else torch.from_numpy(np.asarray(a))


def _masks_t(m: VariantMasks | None):
    if m is None:
        return None
    return VariantMasks(*([_t(v) for v in field] if field is not None else None
                          for field in (m.recurrent, m.zoneout_c, m.zoneout_h)))


@pytest.mark.parametrize("lengths", [None, [6, 1, 0, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("mode, options", OPTIONS, ids=lambda v: str(v))
def test_equations_match_reference(mode, options, train, lengths):
    config, params, x, state0, rng, D, P = _case(mode, options)
    T, B = x.shape[:2]
    drop = [(rng.random((T, B, D * P)) < 0.7) / 0.7 for _ in range(config.num_layers - 1)] if train else None
    masks = sample_masks(config, T, B, rng, np.float64) if train and not config.is_plain else None
    want, want_final, _ = ref_rnn.forward(config, params, x, state0, lengths, drop, masks)
    got, got_final = equations.forward(config, {k: _t(v) for k, v in params.items()}, _t(x),
                                       tuple(_t(s) for s in state0), _t(lengths), [_t(m) for m in drop or []],
                                       _masks_t(masks))
    scale = max(1.0, np.abs(want).max())
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=TOL * scale)
    assert len(got_final) == len(want_final)
    for g, w in zip(got_final, want_final):
        np.testing.assert_allclose(g.numpy(), w, rtol=0, atol=TOL * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("lengths", [None, [6, 1, 0, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("mode, options", OPTIONS[::2], ids=lambda v: str(v))
def test_scan_loop_equals_python_loop(mode, options, lengths):
    """loop="scan" (what ONNX export traces) computes the same function as the Python loop (evaluation)."""
    config, params, x, state0, _, _, _ = _case(mode, options)
    args = ({k: _t(v) for k, v in params.items()}, _t(x), tuple(_t(s) for s in state0), _t(lengths))
    want, want_final = equations.forward(config, *args)
    got, got_final = equations.forward(config, *args, loop="scan")
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    for g, w in zip(got_final, want_final):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-15)


def test_equations_zero_steps_and_default_state():
    config = RNNConfig("LSTM", 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    params = {k: torch.from_numpy(v) for k, v in init_params(config, 0, "float64").items()}
    out, (h, c) = equations.forward(config, params, torch.zeros((0, 2, 3), dtype=torch.float64))
    assert out.shape == (0, 2, 4) and h.shape == (4, 2, 2) and c.shape == (4, 2, 4)
    assert not h.any() and not c.any()  # nothing ran: the zero initial state comes back


def test_equations_gradients_match_reference_backward():
    """autograd through the equations == the reference's hand-written BPTT (a variant with every option)."""
    config, params, x, state0, rng, _, _ = _case("LSTM", dict(peephole=True, layer_norm=True, zoneout=(0.3, 0.2),
                                                              clip=1.0, proj_size=2, bidirectional=True))
    lengths = [6, 2, 5, 3]
    masks = sample_masks(config, 6, 4, rng, np.float64)
    out, final, cache = ref_rnn.forward(config, params, x, state0, lengths, None, masks)
    d_out, d_final = rng.standard_normal(out.shape), tuple(rng.standard_normal(s.shape) for s in final)
    dx, d_state0, grads = ref_rnn.backward(cache, d_out, d_final)
    tp = {k: _t(v).requires_grad_() for k, v in params.items()}
    tx, ts = _t(x).requires_grad_(), tuple(_t(s).requires_grad_() for s in state0)
    got, got_final = equations.forward(config, tp, tx, ts, _t(lengths), None, _masks_t(masks))
    loss = (got * _t(d_out)).sum() + sum((f * _t(d)).sum() for f, d in zip(got_final, d_final))
    loss.backward()
    for name, g in grads.items():
        np.testing.assert_allclose(tp[name].grad.numpy(), g, rtol=0, atol=TOL * max(1.0, np.abs(g).max()),
                                   err_msg=name)
    np.testing.assert_allclose(tx.grad.numpy(), dx, rtol=0, atol=TOL * max(1.0, np.abs(dx).max()))
    for s, d in zip(ts, d_state0):
        np.testing.assert_allclose(s.grad.numpy(), d, rtol=0, atol=TOL * max(1.0, np.abs(d).max()))
