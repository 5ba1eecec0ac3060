"""Streaming inference (lstmkit.stream): T single steps equal the whole-sequence forward; state get/set/reset;
argument errors. Needs the native engine."""
from __future__ import annotations

import numpy as np
import pytest

import lstmkit
from lstmkit import engine
from lstmkit.stream import Stream

pytestmark = pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


def _layer(mode, layers, proj, dtype, I=7, H=12, seed=0):
    cls = lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU
    kw = dict(proj_size=proj) if mode == "LSTM" else {}
    layer = cls(I, H, num_layers=layers, seed=seed, dtype=dtype, **kw)
    layer.eval() if hasattr(layer, "eval") else None
    return layer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 5), ("GRU", 0)])
@pytest.mark.parametrize("B", [1, 3])
def test_steps_equal_sequence_forward(mode, proj, layers, dtype, B):
    layer = _layer(mode, layers, proj, dtype, seed=layers)
    T = 9
    x = np.random.default_rng(B).standard_normal((T, B, 7)).astype(dtype)
    out, final = layer(x)
    s = layer.stream(batch=B)
    got = np.stack([s.step(x[t]) for t in range(T)])
    assert got.dtype == np.dtype(dtype) and got.shape == out.shape
    np.testing.assert_allclose(got, out, **TOL[dtype])
    final = final if isinstance(final, tuple) else (final,)
    for a, b in zip(s.state, final):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_state_set_reset_and_continuation():
    layer = _layer("LSTM", 2, 4, "float64")
    x = np.random.default_rng(0).standard_normal((10, 2, 7))
    out, _ = layer(x)
    s = layer.stream(batch=2)
    for t in range(6):
        s.step(x[t])
    saved = s.state
    assert [a.shape for a in saved] == [(2, 2, 4), (2, 2, 12)]
    rest = [s.step(x[t]) for t in range(6, 10)]
    np.testing.assert_allclose(np.stack(rest), out[6:], **TOL["float64"])
    s.state = saved  # rewind
    np.testing.assert_allclose(s.step(x[6]), out[6], **TOL["float64"])
    saved[0][...] = 99  # the getter returned a copy
    s.reset()
    assert all(not a.any() for a in s.state)
    np.testing.assert_allclose(s.step(x[0]), out[0], **TOL["float64"])
    # a state set from the sequence's own initial state
    h0 = np.random.default_rng(1).standard_normal((2, 2, 4))
    c0 = np.random.default_rng(2).standard_normal((2, 2, 12))
    out2, _ = layer(x, (h0, c0))
    s.state = (h0, c0)
    np.testing.assert_allclose(np.stack([s.step(x[t]) for t in range(10)]), out2, **TOL["float64"])


def test_gru_state_accepts_bare_array():
    layer = _layer("GRU", 1, 0, "float32")
    s = layer.stream()
    h = np.ones((1, 1, 12), np.float32)
    s.state = h
    np.testing.assert_array_equal(s.state[0], h)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bidirectional"):
        lstmkit.LSTM(3, 4, bidirectional=True).stream()
    layer = _layer("LSTM", 2, 0, "float32")
    with pytest.raises(ValueError, match="batch: expected 1 to 16,777,216 rows, got 0"):
        layer.stream(batch=0)
    for huge in (2**31, 2**63):  # once nanobind's "incompatible function arguments"
        with pytest.raises(ValueError, match=f"batch: expected 1 to 16,777,216 rows, got {huge}"):
            layer.stream(batch=huge)
    with pytest.raises(TypeError, match="batch"):
        layer.stream(batch=1.5)
    s = layer.stream(batch=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 7\)"):
        s.step(np.zeros((1, 7), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape"):
        s.step(np.zeros((2, 7, 1), np.float32))
    with pytest.raises(TypeError, match=r"x: expected dtype float32 \(the stream.s dtype\), got float64"):
        s.step(np.zeros((2, 7), np.float64))
    with pytest.raises(ValueError, match=r"state \(c\): expected shape \(2, 2, 12\)"):
        s.state = (np.zeros((2, 2, 12), np.float32), np.zeros((2, 2, 11), np.float32))
    with pytest.raises(TypeError, match=r"state: expected a tuple \(h, c\)"):
        s.state = np.zeros((2, 2, 12), np.float32)
    with pytest.raises(ValueError, match="params: keys do not match"):
        Stream(layer.config, {}, 1)
    # non-contiguous and read-only input is fine (copied), and never modified
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 7)).astype(np.float32))
    x.flags.writeable = False
    before = x.copy()
    y1 = s.step(x)
    s.reset()
    np.testing.assert_array_equal(s.step(np.ascontiguousarray(x)), y1)
    np.testing.assert_array_equal(x, before)


def test_native_glue_checks_shapes():
    layer = _layer("GRU", 1, 0, "float32")
    s = layer.stream(batch=2)
    with pytest.raises(ValueError, match="out: expected shape"):
        s._native.step(np.zeros((2, 7), np.float32), np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="h: expected shape"):
        s._native.set_state(np.zeros((1, 1, 12), np.float32), None)


def test_torch_module_stream():
    torch = pytest.importorskip("torch")
    from lstmkit.torch import GRU, LSTM

    for m in (LSTM(5, 8, num_layers=2, proj_size=3), GRU(5, 8, num_layers=2)):
        x = torch.randn(6, 2, 5)
        with torch.no_grad():
            out, _ = m(x)
        s = m.stream(batch=2)
        got = torch.stack([s.step(x[t]) for t in range(6)])
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, out, rtol=1e-5, atol=1e-6)


def test_torch_stream_inputs_every_form():
    """A torch stream's step reads a CPU tensor's memory without a copy (requires_grad, views and other layouts
    included) and gives the NumPy stream's bits; a tensor NumPy cannot read, or of another dtype or shape, gets
    the same errors as through the full checks."""
    torch = pytest.importorskip("torch")
    from lstmkit.torch import LSTM

    m = LSTM(5, 8, num_layers=2)
    s, ref = m.stream(batch=2), lstmkit.LSTM(5, 8, num_layers=2)
    ref.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    r = ref.stream(batch=2)
    wide = torch.randn(3, 2, 10)
    forms = [wide[0, :, :5].clone().requires_grad_(True),  # needs detach
             wide[1, :, ::2],                              # a strided view: copied
             wide[2, :, :5].t().contiguous().t()]          # another layout: copied
    for x in forms:
        got = s.step(x)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), r.step(np.ascontiguousarray(x.detach().numpy())))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        s.step(torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="x: expected an array of dtype float32, got Tensor of dtype torch.bfloat16"):
        s.step(torch.zeros(2, 5, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 5\)"):
        s.step(torch.zeros(3, 5))


@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 8), ("GRU", 0)])
def test_threads_split_steps_by_units_with_the_same_bits(mode, proj):
    """H = 64 splits each step by hidden units over 2 threads; the bits equal 1 thread's."""
    layer = _layer(mode, 2, proj, "float32", I=16, H=64, seed=4)
    x = np.random.default_rng(0).standard_normal((5, 2, 16)).astype(np.float32)
    got = _streamed_on_1_and_2_threads(layer, x)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[1], layer(x)[0], **TOL["float32"])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_long_stream_probing_both_schedules_keeps_the_bits(mode):
    """A stream times the unit split against one thread every 1024 steps (csrc/core/schedule_probe.h) and may
    switch between them mid-stream: 2,600 steps cross the probes of two periods, and every step's bits still
    equal a one-thread stream's."""
    layer = _layer(mode, 1, 0, "float32", I=16, H=64, seed=5)
    x = np.random.default_rng(1).standard_normal((2600, 1, 16)).astype(np.float32)
    got = _streamed_on_1_and_2_threads(layer, x)
    np.testing.assert_array_equal(got[0], got[1])


def _streamed_on_1_and_2_threads(layer, x) -> list:
    """Every step's output of a stream over x (T, B, I), made and stepped on 1 thread, then on 2."""
    saved = engine.get_num_threads()
    got = []
    try:
        for n in (1, 2):
            engine.set_num_threads(n)
            s = layer.stream(batch=x.shape[1])
            got.append(np.stack([s.step(x[t]) for t in range(len(x))]))
    finally:
        engine.set_num_threads(saved)
    return got


def test_long_variant_stream_probing_both_schedules_keeps_the_bits():
    """A variant stream steps through one-step lockstep loops (B <= 2), each length a probe of its own
    (threads.cpp, LockstepProbes): 2,600 steps cross its probes, and the bits equal a one-thread stream's."""
    from lstmkit import _engine

    layer = lstmkit.LSTM(16, 128, peephole=True, seed=6)
    x = np.random.default_rng(2).standard_normal((2600, 1, 16)).astype(np.float32)
    before = _engine.pool_stats()["probed_alone"]
    got = _streamed_on_1_and_2_threads(layer, x)
    np.testing.assert_array_equal(got[0], got[1])
    assert _engine.pool_stats()["probed_alone"] > before  # the one-thread schedule was tried on 2 threads


# ---- The recurrent product ahead of the input (csrc/sequence/stream.h, post_ahead in threads.cpp) ----------------
# After each step the next step's h·W_hhᵀ is handed to the pool's threads and collected by the next call. These
# sizes (H = 128) are large enough for it; the pool_stats counter shows the handing-over ran.


@pytest.fixture(params=["own", "openmp"])
def threads(request):
    """The kernels' parallel work on lstmkit's own threads ("own"), where a step's product runs ahead, or on
    torch's OpenMP team ("openmp": a torch program), whose parallel calls cannot outlive the caller's, so the
    product is computed at the next step; the mode found is restored afterwards."""
    before = engine.openmp_team()
    if request.param == "openmp":
        import torch

        torch.ones(1 << 16).add_(1)  # torch's OpenMP threads exist once torch has run a parallel op
        assert engine.share_openmp_team(True)
    else:
        engine.share_openmp_team(False)
    try:
        yield request.param
    finally:
        engine.share_openmp_team(bool(before))


def _ahead_jobs() -> int:
    from lstmkit import _engine

    return _engine.pool_stats()["ahead_jobs"]


def _streamed_with_products_ahead(layer, x, threads: str) -> list:
    """_streamed_on_1_and_2_threads, on lstmkit's own threads repeated until the 2-thread stream handed products
    ahead. A stream's first 16 steps use the pool; after that its probe may keep the caller alone (a busy
    machine), and a late pool thread elsewhere keeps the pool to the caller for up to 256 ms (threads.cpp,
    Contention): wait that out. On torch's team none is handed ahead."""
    import time

    if threads == "openmp":
        before = _ahead_jobs()
        got = _streamed_on_1_and_2_threads(layer, x)
        assert _ahead_jobs() == before
        return got
    for _ in range(20):
        before = _ahead_jobs()
        got = _streamed_on_1_and_2_threads(layer, x)
        if _ahead_jobs() > before:
            return got
        time.sleep(0.3)
    pytest.fail("no stream step handed its successor's product to the pool")


@pytest.mark.parametrize("mode,layers,proj", [("LSTM", 1, 0), ("LSTM", 2, 32), ("GRU", 1, 0), ("GRU", 2, 0)])
def test_products_run_ahead_with_the_bits_of_one_thread(mode, layers, proj, threads):
    layer = _layer(mode, layers, proj, "float32", I=32, H=128, seed=7)
    x = np.random.default_rng(3).standard_normal((300, 1, 32)).astype(np.float32)
    got = _streamed_with_products_ahead(layer, x, threads)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[1], layer(x)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode,layers,proj", [("LSTM", 1, 0), ("LSTM", 2, 32), ("GRU", 2, 0)])
def test_large_steps_split_by_units_with_the_bits_of_the_other_schedules(mode, layers, proj):
    """B = 8, H = 128: a step too large to gain from running its products ahead splits each layer by hidden
    units instead (stream.h, by_units); 1,100 steps cross the probe's try of the caller alone, and every step
    equals one thread's bits and, within rounding, the sequence forward."""
    layer = _layer(mode, layers, proj, "float32", I=32, H=128, seed=13)
    x = np.random.default_rng(8).standard_normal((1100, 8, 32)).astype(np.float32)
    got = _streamed_on_1_and_2_threads(layer, x)
    np.testing.assert_array_equal(got[0], got[1])
    np.testing.assert_allclose(got[1][:50], layer(x[:50])[0], rtol=1e-4, atol=1e-5)


def _state_script(layer, x, threads: int) -> list:
    """Steps interleaved with state reads, rewinds and resets while products run ahead, on `threads` threads.
    The pauses let the product of the state before a change finish first (the case a stale product would
    be used in)."""
    import time

    saved_threads = engine.get_num_threads()
    engine.set_num_threads(threads)
    try:
        s = layer.stream(batch=x.shape[1])
        outs = [s.step(x[t]) for t in range(4)]
        saved = s.state  # read while the next product runs ahead
        outs += [s.step(x[t]) for t in range(4, 8)]
        time.sleep(0.002)
        s.state = saved  # rewind: the product run ahead was for the state before
        outs += [s.step(x[t]) for t in range(4, 8)]
        time.sleep(0.002)
        s.reset()
        outs += [s.step(x[t]) for t in range(3)]
        return outs + list(s.state)
    finally:
        engine.set_num_threads(saved_threads)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_state_changes_while_products_run_ahead(mode, threads):
    layer = _layer(mode, 2, 0, "float32", I=32, H=128, seed=8)
    x = np.random.default_rng(4).standard_normal((8, 2, 32)).astype(np.float32)
    one, two = _state_script(layer, x, 1), _state_script(layer, x, 2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    out = layer(x)[0]
    np.testing.assert_allclose(np.stack(two[:8]), out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.stack(two[8:12]), out[4:8], rtol=1e-4, atol=1e-5)  # after the rewind
    np.testing.assert_allclose(np.stack(two[12:15]), out[:3], rtol=1e-4, atol=1e-5)  # after the reset


def test_interleaved_streams_and_calls_share_the_pool(threads):
    """Two streams stepped in turn, with a whole-sequence forward between: each stream's product runs ahead
    only while the pool is free, and every output equals the same stream stepped alone on one thread."""
    a = _layer("LSTM", 1, 0, "float32", I=32, H=128, seed=9)
    b = _layer("GRU", 2, 0, "float32", I=32, H=128, seed=10)
    x = np.random.default_rng(5).standard_normal((50, 1, 32)).astype(np.float32)
    want = [_streamed_on_1_and_2_threads(m, x)[0] for m in (a, b)]
    sa, sb = a.stream(), b.stream()
    got_a, got_b = [], []
    for t in range(len(x)):
        got_a.append(sa.step(x[t]))
        a(x[:3])  # a parallel job while sa's product may still run ahead
        got_b.append(sb.step(x[t]))
    np.testing.assert_array_equal(np.stack(got_a), want[0])
    np.testing.assert_array_equal(np.stack(got_b), want[1])


def test_stream_dropped_while_its_product_runs_ahead(threads):
    """The product running ahead reads the stream's buffers: dropping the stream waits for it."""
    import gc

    layer = _layer("LSTM", 2, 0, "float32", I=32, H=128, seed=11)
    x = np.random.default_rng(6).standard_normal((1, 32)).astype(np.float32)
    first = None
    for _ in range(300):
        s = layer.stream()
        y = s.step(x)
        s.step(x)
        del s
        gc.collect(0)
        first = y if first is None else first
        np.testing.assert_array_equal(y, first)


def test_forked_child_recomputes_the_product_its_parent_ran_ahead(threads):
    """A child forked while its parent's stream has a product running ahead has none of the parent's threads:
    its next step computes the product itself and gives the parent's bits."""
    from forked import run_forked

    layer = _layer("LSTM", 1, 0, "float32", I=32, H=128, seed=12)
    x = np.random.default_rng(7).standard_normal((6, 1, 32)).astype(np.float32)
    want = _streamed_on_1_and_2_threads(layer, x)[0]
    saved = engine.get_num_threads()
    engine.set_num_threads(2)
    try:
        s = layer.stream()
        for t in range(3):
            s.step(x[t])  # the last leaves its successor's product with the pool
        got = run_forked(_step_in_child, (s, x[3:]), "the forked child hung collecting its parent's product")
        np.testing.assert_array_equal(got, want[3:])
        np.testing.assert_array_equal(np.stack([s.step(x[t]) for t in range(3, 6)]), want[3:])  # the parent's too
    finally:
        engine.set_num_threads(saved)


def _step_in_child(s, xs, conn):
    conn.send(np.stack([s.step(xt) for xt in xs]))


def test_stream_stepped_from_threads_in_turn(threads):
    """A stream may be stepped from one thread, then another (never two at once): the product one thread's
    step handed to the pool is collected by the other's, with one thread's bits."""
    import queue
    import threading

    layer = _layer("LSTM", 1, 0, "float32", I=32, H=128, seed=14)
    x = np.random.default_rng(9).standard_normal((400, 1, 32)).astype(np.float32)
    want = _streamed_on_1_and_2_threads(layer, x)[0]
    s, out, done = layer.stream(), [None] * len(x), queue.Queue()
    inboxes = [queue.Queue(), queue.Queue()]

    def stepper(inbox):
        for t in iter(inbox.get, None):
            out[t] = s.step(x[t])
            done.put(t)

    workers = [threading.Thread(target=stepper, args=(q,)) for q in inboxes]
    for w in workers:
        w.start()
    for t in range(len(x)):
        inboxes[t % 2].put(t)
        done.get()
    for q in inboxes:
        q.put(None)
    for w in workers:
        w.join()
    np.testing.assert_array_equal(np.stack(out), want)


def test_a_negated_torch_view_is_streamed_by_its_values():
    """torch keeps some negations lazy (``torch._neg_view``; the imaginary part of a conjugate): the memory
    holds the values without their sign. A step reads the values, on every stream (float, quantised; torch's
    and NumPy's frontends), never the raw memory (which once gave the output of -x)."""
    torch = pytest.importorskip("torch")
    from lstmkit.torch import GRU as TorchGRU

    torch.manual_seed(0)
    module = TorchGRU(1, 5).eval()
    imaginary = torch.tensor([[0.7 + 1.3j]], dtype=torch.complex64).conj().imag  # -1.3, contiguous, negated
    assert imaginary.is_neg() and imaginary.is_contiguous()
    layer = lstmkit.GRU(1, 5, seed=0).eval()
    for make in (lambda: module.stream(1), lambda: layer.stream(1),
                 lambda: lstmkit.quantize(layer, "int8").stream(1)):
        got = np.asarray(make().step(imaginary))
        np.testing.assert_array_equal(got, np.asarray(make().step(np.array([[-1.3]], np.float32))))
        s = make()
        s.state = (torch._neg_view(torch.ones(1, 1, 5)),)
        np.testing.assert_array_equal(np.asarray(s.state[0]), -np.ones((1, 1, 5), np.float32))
    wide = torch.randn(3, 4)
    lstm = lstmkit.LSTM(4, 6, seed=1).eval()
    np.testing.assert_array_equal(lstm.stream(3).step(torch._neg_view(wide)), lstm.stream(3).step(-wide.numpy()))


def test_the_variant_stepper_checks_what_it_is_given():
    """engine.VariantStepper (the variant cells' stream adapter) once blamed a wrong-width x on the weights, took
    an out of the right size and wrong shape, and a float64 state into a float32 stream: each is named now, with
    the native streams' error types (TypeError: dtype or layout; ValueError: shape), which Stream relies on."""
    from lstmkit.params import RNNConfig, init_params

    config = RNNConfig("LSTM", 5, 12, peephole=True)
    stepper = engine.VariantStepper(config, init_params(config, seed=1, dtype="float32"), 3)
    x, out = np.zeros((3, 5), np.float32), np.zeros((3, 12), np.float32)
    for args, error, words in [((np.zeros((3, 4), np.float32), out), ValueError, r"x: expected shape \(3, 5\)"),
                               ((x, np.zeros((4, 9), np.float32)), ValueError, r"out: expected shape \(3, 12\)"),
                               ((x.astype(np.float64), out), TypeError, "x: expected a C-contiguous float32"),
                               ((x, np.zeros((3, 20), np.float32)[:, :12]), TypeError, "out: .* strided")]:
        with pytest.raises(error, match=words):
            stepper.step(*args)
    with pytest.raises(ValueError, match=r"state \(h\): expected \(1, 3, 12\) float32, got \(1, 3, 12\) float64"):
        stepper.set_state(np.zeros((1, 3, 12)), np.zeros((1, 3, 12), np.float32))
    stepper.step(x, out)  # still usable
