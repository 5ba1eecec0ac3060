"""The hand-written BPTT of the reference, checked by float64 central finite differences.

Every configuration the reference supports: LSTM/GRU, stacked, bidirectional, proj_size, initial
state, unsorted lengths (including a zero length), bias=False and fixed inter-layer dropout masks.
"""
import itertools
import zlib

import numpy as np
import pytest

from lstmkit import ref
from lstmkit.params import RNNConfig, init_params
from lstmkit.ref import gru, lstm

EPS = 1e-6
RTOL, ATOL = 1e-6, 1e-8  # central differences in float64 are good to ~1e-9 here


def numeric_grad(f, array, indices):
    """Central differences of scalar f() w.r.t. array[idx] for each idx in indices (array is perturbed in place)."""
    out = []
    for idx in indices:
        keep = array[idx]
        array[idx] = keep + EPS
        up = f()
        array[idx] = keep - EPS
        down = f()
        array[idx] = keep
        out.append((up - down) / (2 * EPS))
    return np.array(out)


def sample_indices(shape, rng, k=12):
    """Up to k random positions in an array of ``shape`` (all of them when fewer)."""
    all_idx = list(itertools.product(*map(range, shape)))
    picks = rng.permutation(len(all_idx))[:k]
    return [all_idx[i] for i in picks]


CONFIGS = [
    dict(mode="LSTM", num_layers=1),
    dict(mode="LSTM", num_layers=2, bidirectional=True),
    dict(mode="LSTM", num_layers=2, proj_size=3),
    dict(mode="LSTM", num_layers=1, bidirectional=True, proj_size=2, lengths=True),
    dict(mode="LSTM", num_layers=3, lengths=True, state=True),
    dict(mode="LSTM", num_layers=2, bidirectional=True, bias=False, state=True, lengths=True),
    dict(mode="LSTM", num_layers=3, dropout=0.5, bidirectional=True),
    dict(mode="GRU", num_layers=1),
    dict(mode="GRU", num_layers=2, bidirectional=True, lengths=True),
    dict(mode="GRU", num_layers=3, state=True, dropout=0.3),
    dict(mode="GRU", num_layers=1, bidirectional=True, bias=False, state=True, lengths=True),
]


@pytest.mark.parametrize("spec", CONFIGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_bptt_matches_finite_differences(spec):
    spec = dict(spec)
    use_lengths, use_state, p = spec.pop("lengths", False), spec.pop("state", False), spec.pop("dropout", 0.0)
    rng = np.random.default_rng(zlib.crc32(str(sorted(spec.items())).encode()))  # stable across runs, unlike hash()
    config = RNNConfig(input_size=3, hidden_size=5, dropout=p, **spec)
    params = init_params(config, seed=1, dtype="float64")
    T, B = 4, 3
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([4, 0, 2]) if use_lengths else None
    state0 = tuple(rng.standard_normal(s.shape) for s in ref.zero_state(config, B, np.float64)) if use_state else None
    masks = None
    if p:
        D = config.num_directions
        masks = [(rng.random((T, B, D * config.output_size)) >= p) / (1 - p) for _ in range(config.num_layers - 1)]

    out, final, cache = ref.forward(config, params, x, state0, lengths, masks)
    d_out = rng.standard_normal(out.shape)
    d_final = tuple(rng.standard_normal(s.shape) for s in final)

    def loss():
        o, f, _ = ref.forward(config, params, x, state0, lengths, masks)
        return float(np.sum(o * d_out) + sum(np.sum(a * b) for a, b in zip(f, d_final)))

    dx, d_state0, grads = ref.backward(cache, d_out, d_final)
    assert set(grads) == set(params)
    checks = [("input", x, dx)] + [(name, params[name], grads[name]) for name in params]
    if use_state:
        checks += [(f"state0[{j}]", s, ds) for j, (s, ds) in enumerate(zip(state0, d_state0))]
    for name, array, analytic in checks:
        idx = sample_indices(array.shape, rng)
        numeric = numeric_grad(loss, array, idx)
        np.testing.assert_allclose(np.array([analytic[i] for i in idx]), numeric, rtol=RTOL, atol=ATOL, err_msg=name)
    if use_lengths:  # a zero-length sequence passes no gradient to its input and keeps its state's gradient
        assert np.all(dx[:, 1] == 0)
        assert np.all(out[:, 1] == 0)


@pytest.mark.parametrize("cell,state_sizes", [(lstm, (5, 5)), (gru, (5,))])
def test_cell_backward_matches_finite_differences(cell, state_sizes):
    rng = np.random.default_rng(0)
    mode = "LSTM" if cell is lstm else "GRU"
    w = {k[:-3]: v for k, v in init_params(RNNConfig(mode, 3, 5), seed=2, dtype="float64").items()}
    x = rng.standard_normal((2, 3))
    state = tuple(rng.standard_normal((2, n)) for n in state_sizes)
    d_new = tuple(rng.standard_normal((2, n)) for n in state_sizes)

    def loss():
        new, _ = cell.cell_forward(x, state, w)
        return float(sum(np.sum(a * b) for a, b in zip(new, d_new)))

    _, cache = cell.cell_forward(x, state, w)
    dx, d_prev, grads = cell.cell_backward(d_new, cache, w)
    for name, array, analytic in [("x", x, dx), *[(f"state{j}", s, d) for j, (s, d) in enumerate(zip(state, d_prev))],
                                  *[(k, w[k], grads[k]) for k in w]]:
        idx = sample_indices(array.shape, rng, k=20)
        np.testing.assert_allclose([analytic[i] for i in idx], numeric_grad(loss, array, idx), rtol=RTOL, atol=ATOL,
                                   err_msg=name)


def test_float32_stays_float32():
    config = RNNConfig("LSTM", 3, 4, num_layers=2, bidirectional=True, proj_size=2)
    params = init_params(config, seed=0, dtype="float32")
    x = np.ones((5, 2, 3), np.float32)
    out, final, cache = ref.forward(config, params, x, lengths=np.array([5, 3]))
    dx, d_state0, grads = ref.backward(cache, np.ones_like(out))
    assert out.dtype == np.float32 and all(s.dtype == np.float32 for s in final + d_state0)
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


def test_sigmoid_is_stable_at_extremes():
    with np.errstate(all="raise"):
        s = lstm.sigmoid(np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32))
    np.testing.assert_allclose(s, [0, 0, 0.5, 1, 1], atol=1e-7)
