"""One cell step: the engine's cell with its weights read in place (engine.cell_forward_into /
cell_backward_into) against the reference, and the torch cells' eager path over it (lstmkit.torch.ops
.eager_cell_step): torch.nn's results and gradients, autograd's checks, and the general path wherever the
call is not the common one."""
from __future__ import annotations

import numpy as np
import pytest

from lstmkit import engine
from lstmkit.ref import gru as ref_gru
from lstmkit.ref import lstm as ref_lstm

pytestmark = pytest.mark.skipif(not engine.available(), reason="needs the native engine")

REF = {"LSTM": ref_lstm, "GRU": ref_gru}
NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _cell(mode, B, I, H, bias, rng, dtype=np.float64):
    G = 4 if mode == "LSTM" else 3
    w = {"weight_ih": rng.standard_normal((G * H, I)) * 0.3, "weight_hh": rng.standard_normal((G * H, H)) * 0.3}
    if bias:
        w["bias_ih"], w["bias_hh"] = rng.standard_normal(G * H) * 0.3, rng.standard_normal(G * H) * 0.3
    w = {k: v.astype(dtype) for k, v in w.items()}
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in ((B, I), (B, H), (B, H)))
    return w, x, h, (c if mode == "LSTM" else None)


def _native_step(mode, w, x, h, c):
    """(h', c' or None, act, aux, dx, dh, dc or None, grads) for the incoming gradients dh' = 1, dc' = 2."""
    B, H = h.shape
    G = 4 if mode == "LSTM" else 3
    weights = [w[k] for k in NAMES if k in w]
    h_new, c_new = np.empty_like(h), (np.empty_like(h) if c is not None else None)
    act, aux = np.empty((B, G * H), h.dtype), np.empty_like(h)
    engine.cell_forward_into(mode, x, h, c, weights, h_new, c_new, act, aux)
    dh, dc = np.ones_like(h), (2 * np.ones_like(h) if c is not None else None)
    dx, dh_prev, dc_prev = np.empty_like(x), np.empty_like(h), (np.empty_like(h) if c is not None else None)
    grads = [np.empty_like(a) for a in weights]
    engine.cell_backward_into(mode, x, h, c, weights, act, aux, dh, dc, dx, dh_prev, dc_prev, grads)
    return h_new, c_new, act, aux, dx, dh_prev, dc_prev, grads


# B from one row to past the in-place bound (kInPlaceRows = 16: the forward packs from 17); sizes with partial
# SIMD vectors along both products.
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("B", [1, 3, 16, 17])
@pytest.mark.parametrize("I,H", [(3, 5), (17, 40), (64, 32)])
@pytest.mark.parametrize("bias", [True, False])
def test_native_step_and_its_backward_match_the_reference(mode, B, I, H, bias):
    rng = np.random.default_rng(B * 1000 + I * 10 + H)
    w, x, h, c = _cell(mode, B, I, H, bias, rng)
    state = (h, c) if c is not None else (h,)
    (new, cache) = REF[mode].cell_forward(x, state, w)
    d_state = (np.ones_like(h), 2 * np.ones_like(h)) if c is not None else (np.ones_like(h),)
    dx, d_prev, grads = REF[mode].cell_backward(d_state, cache, w)
    h_new, c_new, _, _, n_dx, n_dh, n_dc, n_grads = _native_step(mode, w, x, h, c)
    # float64, a few dozen terms per sum: agreement to ~1e-15 relative; 1e-12 leaves room on every ISA
    np.testing.assert_allclose(h_new, new[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(n_dx, dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(n_dh, d_prev[0], rtol=0, atol=1e-12)
    if c is not None:
        np.testing.assert_allclose(c_new, new[1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(n_dc, d_prev[1], rtol=0, atol=1e-12)
    for name, g in zip(NAMES, n_grads):
        np.testing.assert_allclose(g, grads[name], rtol=0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("B", [1, 3, 40])
def test_native_step_bits_do_not_depend_on_threads(mode, B):
    # large enough for every product to split over the pool (above gemm.h's kParallelMacs)
    rng = np.random.default_rng(B)
    w, x, h, c = _cell(mode, B, 300, 256, True, rng, np.float32)
    before = engine.get_num_threads()
    try:
        engine.set_num_threads(1)
        one = _native_step(mode, w, x, h, c)
        engine.set_num_threads(2)
        two = _native_step(mode, w, x, h, c)
    finally:
        engine.set_num_threads(before)
    for a, b in zip(one[:7] + tuple(one[7]), two[:7] + tuple(two[7])):
        if a is not None:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("B", [0, 2, 19])
def test_checked_cell_api_matches_the_reference(mode, B):
    rng = np.random.default_rng(B + 7)
    w, x, h, c = _cell(mode, B, 6, 10, True, rng)
    state = (h, c) if c is not None else (h,)
    new, cache = engine.cell_forward(mode, x, state, w, train=True)
    want, ref_cache = REF[mode].cell_forward(x, state, w)
    d_state = (rng.standard_normal(h.shape), None) if c is not None else (rng.standard_normal(h.shape),)
    dx, d_prev, grads = engine.cell_backward(mode, d_state, cache, w)
    r_dx, r_prev, r_grads = REF[mode].cell_backward(
        tuple(np.zeros_like(h) if d is None else d for d in d_state), ref_cache, w)
    for a, b in [*zip(new, want), (dx, r_dx), *zip(d_prev, r_prev), *((grads[k], r_grads[k]) for k in r_grads)]:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # a decoder refilling its buffers before the backward (x[:] = next input, h[:] = h'): the cache holds its own
    # copies, so the gradients stay the step's (they once moved by 75 in dW_ih)
    x[:] = rng.standard_normal(x.shape)
    for s, n in zip(state, new):
        s[:] = n
    again = engine.cell_backward(mode, d_state, cache, w)
    for a, b in [(again[0], dx), *zip(again[1], d_prev), *((again[2][k], grads[k]) for k in grads)]:
        np.testing.assert_array_equal(a, b)


def test_checked_cell_api_refuses_by_name():
    rng = np.random.default_rng(0)
    w, x, h, c = _cell("LSTM", 2, 3, 4, True, rng)
    with pytest.raises(TypeError, match="cache: expected the CellCache"):
        engine.cell_backward("LSTM", (h, c), (x, h, c), w)
    with pytest.raises(TypeError, match="train: expected a bool, got str 'no'"):
        engine.cell_forward("LSTM", x, (h, c), w, train="no")
    _, cache = engine.cell_forward("LSTM", x, (h, c), w, train=True)
    with pytest.raises(ValueError, match="d_state"):
        engine.cell_backward("LSTM", (h[:1], c), cache, w)
    projected = dict(w, weight_hh=w["weight_hh"][:, :3], weight_hr=rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match="weight_hr"):
        engine.cell_forward("LSTM", x, (h[:, :3], c), projected, train=True)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_numpy_cells_train_on_the_engine_as_on_the_reference(mode):
    import lstmkit

    cells = [getattr(lstmkit, mode + "Cell")(4, 7, seed=3, dtype="float64", backend=b) for b in ("native", "reference")]
    x = np.random.default_rng(1).standard_normal((5, 4))
    results = []
    for cell in cells:
        out = cell(x)
        h = out[0] if mode == "LSTM" else out
        g = cell.backward(np.ones_like(h))
        results.append((h, g.input, *(g.hx if mode == "LSTM" else (g.hx,)), g.params))
    for a, b in zip(results[0][:-1], results[1][:-1]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert results[0][-1].keys() == results[1][-1].keys()
    for k, g in results[1][-1].items():
        np.testing.assert_allclose(results[0][-1][k], g, rtol=0, atol=1e-12, err_msg=k)


# ---- the torch cells' eager path --------------------------------------------------------------------------

torch = pytest.importorskip("torch")
import lstmkit.torch as lt  # noqa: E402
from lstmkit.torch import ops  # noqa: E402

CELLS = {"LSTM": (lt.LSTMCell, torch.nn.LSTMCell), "GRU": (lt.GRUCell, torch.nn.GRUCell)}


def _pair(mode, I, H, bias=True, dtype=torch.float64):
    ours, theirs = CELLS[mode]
    torch.manual_seed(0)
    a = ours(I, H, bias=bias, dtype=dtype)
    b = theirs(I, H, bias=bias, dtype=dtype)
    b.load_state_dict(a.state_dict())
    return a, b


def _unroll(cell, xs, hx):
    """Steps over xs (T, B, I) from hx; the loss of every h and c."""
    loss = 0
    for x in xs:
        hx = cell(x, hx)
        loss = loss + sum((s * s).sum() for s in (hx if isinstance(hx, tuple) else (hx,)))
    return loss


@pytest.fixture
def native_backward_calls(monkeypatch):
    calls = []
    original = engine.cell_backward_into
    monkeypatch.setattr(engine, "cell_backward_into", lambda *a: calls.append(1) or original(*a))
    return calls


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("B", [1, 5, 20])
@pytest.mark.parametrize("bias", [True, False])
def test_eager_training_matches_torch_nn(mode, B, bias, native_backward_calls):
    ours, theirs = _pair(mode, 6, 9, bias)
    xs = torch.randn(4, B, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, 9, dtype=torch.float64, requires_grad=True)
    hx = (h0, torch.randn(B, 9, dtype=torch.float64)) if mode == "LSTM" else h0
    grads = []
    for cell in (ours, theirs):
        loss = _unroll(cell, xs, hx)
        grads.append((loss, *torch.autograd.grad(loss, [xs, h0, *cell.parameters()])))
    assert len(native_backward_calls) == 4  # the eager path's own backward, once per step
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_eager_training_gradcheck_and_double_backward(mode):
    cell, _ = _pair(mode, 3, 4)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    if mode == "LSTM":
        c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        inputs, fn = (x, h, c, *cell.parameters()), lambda x, h, c, *p: cell(x, (h, c))
    else:
        inputs, fn = (x, h, *cell.parameters()), lambda x, h, *p: cell(x, h)
    # check_batched_grad: autograd's legacy batching of the backward (torch ops then, as the operators do)
    assert torch.autograd.gradcheck(fn, inputs, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_training_and_inference_steps_give_the_same_bits(mode):
    cell, _ = _pair(mode, 5, 8, dtype=torch.float32)
    x, h = torch.randn(3, 5), torch.randn(3, 8)
    hx = (h, torch.randn(3, 8)) if mode == "LSTM" else h
    trained = cell(x.requires_grad_(), hx)
    with torch.no_grad():
        inferred = cell(x, hx)
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (trained, inferred))):
        assert torch.equal(a.detach(), b)


def test_a_weight_changed_in_place_before_backward_is_refused_as_by_torch_nn():
    for cell in _pair("LSTM", 3, 4):
        out = cell(torch.randn(2, 3, dtype=torch.float64, requires_grad=True))
        with torch.no_grad():
            cell.weight_ih.add_(1.0)  # (which dx needs: torch.nn keeps it too)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out[0].sum().backward()


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_uncommon_calls_take_the_general_path_with_the_same_results(mode, monkeypatch):
    cell, ref = _pair(mode, 4, 6)
    x = torch.randn(4, 3, dtype=torch.float64).t()  # (3, 4), not contiguous
    h = torch.randn(3, 6, dtype=torch.float64)
    hx = [h, h.clone()] if mode == "LSTM" else h  # a list, as torch.nn accepts
    fast = []
    original = ops.eager_cell_step
    monkeypatch.setattr(ops, "eager_cell_step", lambda *a: fast.append(original(*a)) or fast[-1])
    with torch.no_grad():
        ours, theirs = cell(x, hx), ref(x, hx)
        unbatched = cell(x[0], [s[0] for s in hx] if mode == "LSTM" else hx[0])
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (ours, theirs))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (unbatched, ours))):
        torch.testing.assert_close(a, b[0], rtol=1e-12, atol=1e-12)
    assert fast and fast[0] is not None  # a strided input is still the common call (made contiguous)


def test_a_replaced_weight_of_the_wrong_shape_is_named():
    cell, _ = _pair("LSTM", 4, 6)
    cell.weight_hh = torch.nn.Parameter(torch.zeros(24, 5, dtype=torch.float64))
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="weight_hh"):
            cell(torch.randn(2, 4, dtype=torch.float64))
