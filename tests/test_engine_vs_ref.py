"""The native engine against the NumPy reference (the spec): parity, input handling, errors.

Tolerances (max |engine − ref| ≤ atol + rtol·|ref|, elementwise):
  float32: rtol 1e-5, atol 1e-6   (the two differ only in summation order and libm rounding)
  float64: rtol 1e-12, atol 1e-13
Gradients (engine.backward against ref.backward) sum over steps and batch, so they get a looser
float32 bound: rtol 1e-4, atol 1e-5 (float64: rtol 1e-10, atol 1e-12).
These tests do not skip when the extension is missing: CI builds it, so a missing engine is a failure.
"""
from __future__ import annotations

import numpy as np
import pytest

from lstmkit import engine, ref
from lstmkit.params import RNNConfig, init_params
from lstmkit.ref import gru as ref_gru
from lstmkit.ref import lstm as ref_lstm
from lstmkit.ref.rnn import layer_weights

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
GRAD_TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}
REF_CELLS = {"LSTM": ref_lstm, "GRU": ref_gru}


@pytest.fixture(autouse=True)
def _engine_built():
    assert engine.available(), (
        "lstmkit._engine is not built: build it (pip install . or the CMake dev loop in the README) before "
        "running the engine tests; they must not pass without it"
    )


def random_case(seed: int):
    """A random configuration, parameters, input, initial state and lengths."""
    rng = np.random.default_rng(seed)
    mode = ("LSTM", "GRU")[seed % 2]
    dtype = ("float32", "float64")[(seed // 2) % 2]
    H = int(rng.integers(1, 13))
    config = RNNConfig(
        mode,
        input_size=int(rng.integers(1, 10)),
        hidden_size=H,
        num_layers=int(rng.integers(1, 4)),
        bias=bool(rng.random() < 0.8),
        bidirectional=bool(rng.random() < 0.5),
        proj_size=int(rng.integers(1, H)) if mode == "LSTM" and H > 1 and rng.random() < 0.4 else 0,
    )
    T, B = int(rng.integers(0, 12)), int(rng.integers(0, 7))
    params = init_params(config, seed=seed, dtype=dtype)
    x = rng.standard_normal((T, B, config.input_size)).astype(dtype)
    state0 = None
    if rng.random() < 0.5:
        state0 = tuple(s + rng.standard_normal(s.shape).astype(dtype) for s in ref.zero_state(config, B, dtype))
    lengths = None
    if rng.random() < 0.6:
        lengths = rng.integers(0, T + 1, size=B)  # unsorted, zeros possible
        if B and rng.random() < 0.5:
            lengths[rng.integers(B)] = 0
    return config, params, x, state0, lengths


def assert_forward_matches(config, params, x, state0=None, lengths=None):
    out_ref, state_ref, _ = ref.forward(config, params, x, state0, lengths)
    out, state = engine.forward(config, params, x, state0, lengths)
    tol = TOL[x.dtype.name]
    assert out.dtype == x.dtype and out.shape == out_ref.shape
    np.testing.assert_allclose(out, out_ref, err_msg="output", **tol)
    assert len(state) == len(state_ref)
    for name, got, want in zip(("h_n", "c_n"), state, state_ref):
        assert got.dtype == x.dtype
        np.testing.assert_allclose(got, want, err_msg=name, **tol)


@pytest.mark.parametrize("seed", range(80))
def test_forward_parity_random_configs(seed):
    assert_forward_matches(*random_case(seed))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 5), ("GRU", 0)])
def test_forward_parity_large_blocks(mode, proj, dtype):
    """Sizes past the GEMM's cache blocks (K > 256, N·T > 96 rows) and odd widths (not multiples of 8)."""
    rng = np.random.default_rng(1)
    config = RNNConfig(mode, input_size=300, hidden_size=37, num_layers=2, bidirectional=True, proj_size=proj)
    params = init_params(config, seed=2, dtype=dtype)
    x = rng.standard_normal((30, 9, 300)).astype(dtype)
    assert_forward_matches(config, params, x, lengths=np.array([30, 1, 17, 30, 0, 29, 5, 12, 30]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_forward_parity_long_sequence(mode, dtype):
    """Error must not grow along 200 recurrent steps with B = 1 (the matrix-vector path)."""
    rng = np.random.default_rng(3)
    config = RNNConfig(mode, input_size=8, hidden_size=64)
    params = init_params(config, seed=4, dtype=dtype)
    assert_forward_matches(config, params, rng.standard_normal((200, 1, 8)).astype(dtype))


def assert_backward_matches(config, params, x, state0=None, lengths=None, seed=0, d_final=True):
    rng = np.random.default_rng(seed)
    out, state, cache = ref.forward(config, params, x, state0, lengths)
    d_out = rng.standard_normal(out.shape).astype(x.dtype)
    d_final_state = tuple(rng.standard_normal(s.shape).astype(x.dtype) for s in state) if d_final else None
    want_dx, want_d0, want_grads = ref.backward(cache, d_out, d_final_state)
    dx, d0, grads = engine.backward(config, params, x, d_out, d_final_state, state0, lengths)
    tol = GRAD_TOL[x.dtype.name]
    np.testing.assert_allclose(dx, want_dx, err_msg="dx", **tol)
    assert len(d0) == len(want_d0)
    for name, got, want in zip(("d_h0", "d_c0"), d0, want_d0):
        np.testing.assert_allclose(got, want, err_msg=name, **tol)
    assert list(grads) == list(params)  # every parameter, in torch's order
    for name, want in want_grads.items():
        assert grads[name].dtype == x.dtype and grads[name].shape == params[name].shape
        np.testing.assert_allclose(grads[name], want, err_msg=name, **tol)


@pytest.mark.parametrize("seed", range(60))
def test_backward_parity_random_configs(seed):
    config, params, x, state0, lengths = random_case(seed)
    assert_backward_matches(config, params, x, state0, lengths, seed=seed, d_final=seed % 3 != 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 5), ("GRU", 0)])
def test_backward_parity_large_blocks(mode, proj, dtype):
    rng = np.random.default_rng(8)
    config = RNNConfig(mode, input_size=260, hidden_size=19, num_layers=2, bidirectional=True, proj_size=proj)
    params = init_params(config, seed=9, dtype=dtype)
    x = rng.standard_normal((25, 7, 260)).astype(dtype)
    assert_backward_matches(config, params, x, lengths=np.array([25, 3, 0, 25, 11, 24, 1]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 16), ("GRU", 0)])
@pytest.mark.parametrize("batch", [32, 3])
def test_training_parallel_paths(mode, proj, dtype, batch):
    """On 2 threads, B = 32 runs each thread's rows through the whole time loop (forward and backward);
    B = 3 splits each step by hidden units (the backward's one meeting per step). With unsorted lengths
    against the reference; train_forward gives forward's results bit for bit without lengths, and a
    backward from its workspace equals one that recomputes it."""
    rng = np.random.default_rng(12)
    config = RNNConfig(mode, input_size=8, hidden_size=64, num_layers=2, bidirectional=True, proj_size=proj)
    params = init_params(config, seed=13, dtype=dtype)
    x = rng.standard_normal((12, batch, 8)).astype(dtype)
    threads = engine.get_num_threads()
    engine.set_num_threads(2)
    try:
        lengths = rng.integers(0, 13, size=batch)
        assert_backward_matches(config, params, x, lengths=lengths)
        out, final = engine.forward(config, params, x)
        out_t, final_t, workspace = engine.train_forward(config, params, x)
        np.testing.assert_array_equal(out_t, out)
        for a, b in zip(final_t, final):
            np.testing.assert_array_equal(a, b)
        assert workspace.shape == (engine.workspace_size(config, 12, batch),)
        d_out = rng.standard_normal(out.shape).astype(dtype)
        saved = engine.backward(config, params, x, d_out, workspace=workspace)
        again = engine.backward(config, params, x, d_out)
        np.testing.assert_array_equal(saved[0], again[0])
        for name in params:
            np.testing.assert_array_equal(saved[2][name], again[2][name])
        with pytest.raises(ValueError, match="workspace: expected shape"):
            engine.backward(config, params, x, d_out, workspace=workspace[:-1])
    finally:
        engine.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch", [5, 9])
def test_small_batch_row_split_same_bits(mode, batch):
    """Small batches on 2 threads either side of the row split's threshold (kSplitRows per thread): B = 5 runs
    by units, B = 9 by rows in shares of whole pairs of rows (the odd row in the last share). The same bits as
    one thread, forward, training forward and backward, with lengths that end sequences inside either share;
    and the reference's values."""
    rng = np.random.default_rng(batch)
    config = RNNConfig(mode, input_size=8, hidden_size=128, num_layers=2)
    params = init_params(config, seed=3, dtype="float32")
    x = rng.standard_normal((9, batch, 8)).astype("float32")
    lengths = rng.integers(0, 10, size=batch)
    d_out = rng.standard_normal((9, batch, 128)).astype("float32")
    threads = engine.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            engine.set_num_threads(n)
            for lens in (None, lengths):
                out, final, workspace = engine.train_forward(config, params, x, lengths=lens)
                dx, d_state0, grads = engine.backward(config, params, x, d_out, lengths=lens, workspace=workspace)
                results.append([engine.forward(config, params, x, lengths=lens)[0], out, *final, dx, *d_state0,
                                *grads.values()])
        engine.set_num_threads(2)
        params64 = init_params(config, seed=3, dtype="float64")
        assert_backward_matches(config, params64, x.astype("float64"), lengths=lengths)
    finally:
        engine.set_num_threads(threads)
    for one, two in zip(results[:2], results[2:]):
        for a, b in zip(one, two):
            np.testing.assert_array_equal(a, b)


def test_backward_input_errors():
    config, params, x, state0 = _lstm_case()
    d_out = np.zeros((5, 3, 4))
    with pytest.raises(ValueError, match=r"d_output: expected shape \(5, 3, 4\), got \(5, 3, 2\)"):
        engine.backward(config, params, x, d_out[:, :, :2])
    with pytest.raises(TypeError, match=r"d_output: expected dtype float64"):
        engine.backward(config, params, x, d_out.astype(np.float32))
    with pytest.raises(TypeError, match=r"d_final_state: expected a tuple \(h, c\)"):
        engine.backward(config, params, x, d_out, d_final_state=np.zeros((4, 3, 2)))
    dx, (dh0, dc0), grads = engine.backward(config, params, x[:0], d_out[:0], state0=state0)  # T = 0
    assert dx.shape == (0, 3, 4) and not dh0.any() and not dc0.any()
    assert all(not g.any() for g in grads.values())


def test_backward_without_workspace_checks_once(monkeypatch):
    """engine.backward with no workspace runs the training forward on the call it checked (one round of checks,
    not a second through train_forward), and equals the backward from train_forward's workspace exactly."""
    config, params, x, state0, lengths = random_case(5)
    d_out = np.random.default_rng(5).standard_normal((*x.shape[:2], config.num_directions * config.output_size))
    d_out = d_out.astype(x.dtype)
    _, _, workspace = engine.train_forward(config, params, x, state0, lengths)
    want = engine.backward(config, params, x, d_out, None, state0, lengths, workspace=workspace)
    checked = []
    original = engine._check_call
    monkeypatch.setattr(engine, "_check_call", lambda *a: checked.append(1) or original(*a))
    got = engine.backward(config, params, x, d_out, None, state0, lengths)
    assert len(checked) == 1
    np.testing.assert_array_equal(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        np.testing.assert_array_equal(a, b)
    for name in want[2]:
        np.testing.assert_array_equal(got[2][name], want[2][name])


def test_lengths_semantics_explicit():
    """Packed-sequence semantics, stated directly rather than through the reference."""
    config = RNNConfig("GRU", input_size=3, hidden_size=4, bidirectional=True)
    params = init_params(config, seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((6, 3, 3))
    lengths = np.array([2, 6, 0])
    out, (h_n,) = engine.forward(config, params, x, lengths=lengths)
    assert np.all(out[2:, 0] == 0) and np.all(out[:, 2] == 0)  # zero past each end
    assert np.all(h_n[:, 2] == 0)  # length 0: final state is the initial state (zeros)
    # sequence 0 alone, truncated to its length, gives the same outputs and final state
    out0, (h0,) = engine.forward(config, params, x[:2, :1])
    np.testing.assert_allclose(out[:2, :1], out0, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h_n[:, :1], h0, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode,proj,bias", [("LSTM", 0, True), ("LSTM", 3, True), ("LSTM", 0, False), ("GRU", 0, True),
                                           ("GRU", 0, False)])
@pytest.mark.parametrize("B", [1, 5])
def test_cell_forward_parity(mode, proj, bias, dtype, B):
    rng = np.random.default_rng(B)
    config = RNNConfig(mode, input_size=6, hidden_size=11, bias=bias, proj_size=proj)
    w = layer_weights(init_params(config, seed=5, dtype=dtype), 0, 0)
    x = rng.standard_normal((B, 6)).astype(dtype)
    state = tuple(rng.standard_normal(s[0].shape).astype(dtype) for s in ref.zero_state(config, B, dtype))
    want, _ = REF_CELLS[mode].cell_forward(x, state, w)
    got = engine.cell_forward(mode, x, state, w)
    assert isinstance(got, tuple) and len(got) == len(want)
    for g, r in zip(got, want):
        assert g.dtype == x.dtype
        np.testing.assert_allclose(g, r, **TOL[dtype])


def _lstm_case(dtype="float64", B=3, T=5):
    config = RNNConfig("LSTM", input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=2)
    rng = np.random.default_rng(7)
    params = init_params(config, seed=7, dtype=dtype)
    x = rng.standard_normal((T, B, 4)).astype(dtype)
    state0 = tuple(rng.standard_normal(s.shape).astype(dtype) for s in ref.zero_state(config, B, dtype))
    return config, params, x, state0


def test_non_contiguous_and_read_only_inputs_are_not_touched():
    config, params, x, state0 = _lstm_case()
    lengths = np.array([5, 2, 4])
    want_out, want_state, _ = ref.forward(config, params, x, state0, lengths)

    # Non-contiguous views: x through a transpose, weights in Fortran order, the state as strided slices.
    x_nc = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    params_nc = {k: np.asfortranarray(v) for k, v in params.items()}
    state_nc = tuple(np.repeat(s, 2, axis=2)[:, :, ::2] for s in state0)
    assert not x_nc.flags.c_contiguous and not state_nc[0].flags.c_contiguous
    # Read-only: every input array frozen.
    frozen = [x_nc, *params_nc.values(), *state_nc, lengths]
    for a in frozen:
        a.flags.writeable = False
    before = [a.copy() for a in frozen]

    out, state = engine.forward(config, params_nc, x_nc, state_nc, lengths)
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-13)
    for g, r in zip(state, want_state):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)
    for a, b in zip(frozen, before):
        np.testing.assert_array_equal(a, b)
    assert out.flags.writeable and out.flags.c_contiguous
    assert all(not np.shares_memory(s, s0) for s, s0 in zip(state, state_nc))

    w = layer_weights(params_nc, 0, 0)
    h = np.asfortranarray(state0[0][0])
    c = state0[1][0][:, ::-1]
    want, _ = ref_lstm.cell_forward(x[0], (h, c), w)
    got = engine.cell_forward("LSTM", x_nc[0], (h, c), w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-13)


def test_non_native_byte_order():
    config, params, x, state0 = _lstm_case()
    want, _, _ = ref.forward(config, params, x, state0)
    big = {k: v.astype(">f8") for k, v in params.items()}
    got, _ = engine.forward(config, big, x.astype(">f8"), tuple(s.astype(">f8") for s in state0))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("T,B", [(0, 3), (4, 0), (0, 0)])
def test_empty_time_or_batch(mode, T, B):
    config = RNNConfig(mode, input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    params = init_params(config, seed=0, dtype="float32")
    x = np.zeros((T, B, 3), np.float32)
    state0 = tuple(np.full(s.shape, 0.5, np.float32) for s in ref.zero_state(config, B, "float32"))
    out, state = engine.forward(config, params, x, state0, lengths=np.zeros(B, np.int64))
    assert out.shape == (T, B, 10) and out.dtype == np.float32
    for s, s0 in zip(state, state0):
        np.testing.assert_array_equal(s, s0)  # no step ran: the final state is the initial one
    assert_forward_matches(config, params, x, state0)


def test_cell_forward_empty_batch():
    config = RNNConfig("LSTM", input_size=3, hidden_size=5, proj_size=2)
    w = layer_weights(init_params(config, seed=0), 0, 0)
    state = (np.zeros((0, 2), np.float32), np.zeros((0, 5), np.float32))
    h, c = engine.cell_forward("LSTM", np.zeros((0, 3), np.float32), state, w)
    assert h.shape == (0, 2) and c.shape == (0, 5)


def test_dtype_errors():
    config, params, x, state0 = _lstm_case()
    with pytest.raises(TypeError, match=r"x: expected dtype float32 or float64, got int64"):
        engine.forward(config, params, x.astype(np.int64))
    with pytest.raises(TypeError, match=r"params\['weight_hh_l1'\]: expected dtype float64 .* got float32"):
        engine.forward(config, {**params, "weight_hh_l1": params["weight_hh_l1"].astype(np.float32)}, x)
    with pytest.raises(TypeError, match=r"state0 \(c\): expected dtype float64"):
        engine.forward(config, params, x, (state0[0], state0[1].astype(np.float32)))
    with pytest.raises(TypeError, match=r"lengths: expected integers, got dtype float64"):
        engine.forward(config, params, x, lengths=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match=r"config: expected an lstmkit RNNConfig"):
        engine.forward({"mode": "LSTM"}, params, x)
    with pytest.raises(TypeError, match=r"state0: expected a tuple \(h, c\), got a tuple of 1"):
        engine.forward(config, params, x, (state0[0],))


def test_shape_and_value_errors():
    config, params, x, state0 = _lstm_case()
    with pytest.raises(ValueError, match=r"x: expected 3 dimensions"):
        engine.forward(config, params, x[0])
    with pytest.raises(ValueError, match=r"x: expected 4 features .* got shape \(5, 3, 3\)"):
        engine.forward(config, params, x[:, :, :3])
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1_reverse'\]"):
        engine.forward(config, {k: v for k, v in params.items() if k != "bias_hh_l1_reverse"}, x)
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        engine.forward(config, {**params, "extra": params["bias_ih_l0"]}, x)
    with pytest.raises(ValueError, match=r"params\['weight_hr_l0'\]: expected shape \(2, 6\), got \(6, 2\)"):
        engine.forward(config, {**params, "weight_hr_l0": params["weight_hr_l0"].T}, x)
    with pytest.raises(ValueError, match=r"state0 \(h\): expected shape \(4, 3, 2\), got \(4, 3, 6\)"):
        engine.forward(config, params, x, (np.zeros((4, 3, 6)), state0[1]))
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\]"):
        engine.forward(config, params, x, lengths=[1, 6, 2])
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\]"):
        engine.forward(config, params, x, lengths=[1, -1, 2])
    with pytest.raises(ValueError, match=r"lengths: expected 3 values"):
        engine.forward(config, params, x, lengths=[1, 2])


def test_cell_forward_errors():
    config, params, x, state0 = _lstm_case()
    w = layer_weights(params, 0, 0)
    state = (state0[0][0], state0[1][0])
    with pytest.raises(ValueError, match=r"mode: expected one of"):
        engine.cell_forward("RNN", x[0], state, w)
    with pytest.raises(ValueError, match=r"missing \['bias_hh'\]"):
        engine.cell_forward("LSTM", x[0], state, {k: v for k, v in w.items() if k != "bias_hh"})
    with pytest.raises(ValueError, match=r"unexpected \['weight_hr'\]"):
        engine.cell_forward("GRU", x[0], (state[0],), {**w, "weight_ih": w["weight_ih"][:18]})
    with pytest.raises(ValueError, match=r"x: expected 2 dimensions"):
        engine.cell_forward("LSTM", x, state, w)
    with pytest.raises(ValueError, match=r"w\['weight_ih'\]: expected shape \(24, 3\)"):
        engine.cell_forward("LSTM", x[0][:, :3], state, w)
    with pytest.raises(ValueError, match=r"state \(c\): expected shape \(3, 6\)"):
        engine.cell_forward("LSTM", x[0], (state[0], state[1][:, :5]), w)
    with pytest.raises(TypeError, match=r"state: expected a tuple \(h, c\)"):
        engine.cell_forward("LSTM", x[0], state[0], w)
    with pytest.raises(TypeError, match=r"w\['bias_ih'\]: expected dtype float64"):
        engine.cell_forward("LSTM", x[0], state, {**w, "bias_ih": w["bias_ih"].astype(np.float32)})


def test_native_glue_rejects_bad_shapes_instead_of_crashing():
    """Direct calls that skip engine.py's checks still raise, never read out of bounds."""
    from lstmkit import _engine

    config, params, x, state0 = _lstm_case()
    weights = [params[k] for k in params]
    out = np.empty((5, 3, 4))
    h_n, c_n = np.empty((4, 3, 2)), np.empty((4, 3, 6))
    _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, *state0, None, [], out, h_n, c_n)  # the right call works
    with pytest.raises(ValueError, match=r"out: expected shape \(5, 3, 4\)"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, *state0, None, [], np.empty((5, 3, 3)), h_n, c_n)
    with pytest.raises(ValueError, match=r"weights: expected 20 arrays, got 19"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights[:-1], *state0, None, [], out, h_n, c_n)
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, 5\], got 9"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, *state0, np.array([1, 9, 2]), [], out, h_n, c_n)
    with pytest.raises(ValueError, match=r"h0: expected shape"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, state0[0][:2], state0[1], None, [], out, h_n, c_n)
    with pytest.raises(ValueError, match=r"dropout_masks: expected 0 or 1 masks \(one per layer but the last\), got 2"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, *state0, None, [np.ones((5, 3, 4))] * 2, out, h_n,
                        c_n)
    with pytest.raises(ValueError, match=r"dropout_masks\[0\]: expected shape \(5, 3, 4\)"):
        _engine.forward("LSTM", 2, True, 6, 2, True, x, weights, *state0, None, [np.ones((5, 3, 2))], out, h_n, c_n)
    with pytest.raises(TypeError):  # dtype mismatch: no overload, no silent conversion
        _engine.forward("LSTM", 2, True, 6, 2, True, x.astype(np.float32), weights, *state0, None, [], out, h_n, c_n)
