"""lstmkit.quantize: int8 and bfloat16 inference against the float32 engine.

* Error bounds over a sweep of configurations (the float32 engine is the reference; it is itself tested
  against lstmkit.ref). Metric: max |q − f| / max |f| over the output and the final states.
  - bfloat16: weights rounded to 8 significant bits, relative error ≤ 2^-8 each; a product over K
    inputs sums K such errors with random signs, so a pre-activation is off by about 2^-9 relative,
    and the gates (slope ≤ 1) pass it on: measured ≤ 3.6e-3 on this sweep, bound 1e-2.
  - int8: 7-bit activations (range / 127 per step) and 8-bit weights (max / 127 per step) make each
    product off by about 1 % of its scale; measured ≤ 2.4e-2 on this sweep (random weights, up to 3 layers,
    20 steps, errors compound through the recurrence), bound 3e-2.
* Every instruction-set path the CPU runs (LSTMKIT_ISA in a subprocess; a failure names the path and the
  key), the AVX2 path with each of its int8 inner loops ("madd", "pairs": LSTMKIT_INT8_KERNEL): the int8
  integer products are exact, so every path (VNNI where the CPU has it) gives the portable path's bits; the
  bf16 products stay within a bound derived from their rounding, which differs by path (AVX-512 BF16's
  vdpbf16ps rounds the activations to bf16 too: 2u + u² per term instead of u, u = 2⁻⁸).
* Bad input gets the usual errors; a trained model keeps its accuracy.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstmkit
from lstmkit import engine
from lstmkit.quantize import QUANT_DTYPES, QuantizedRNN

pytestmark = pytest.mark.skipif(not engine.available(), reason="lstmkit._engine is not built")

BOUND = {"int8": 3e-2, "bfloat16": 1e-2}

SWEEP = [  # mode, layers, bidirectional, proj_size, lengths, batch_first
    ("LSTM", 1, False, 0, False, False),
    ("LSTM", 2, False, 0, True, False),
    ("LSTM", 2, True, 0, True, True),
    ("LSTM", 2, False, 12, False, False),
    ("LSTM", 1, True, 7, True, False),
    ("GRU", 1, False, 0, False, True),
    ("GRU", 2, True, 0, True, False),
    ("GRU", 3, False, 0, True, False),
]


def _rel(q, f) -> float:
    return float(np.abs(np.asarray(q) - np.asarray(f)).max() / np.abs(np.asarray(f)).max())


def _flat(result):
    out, final = result
    return [out, *final] if isinstance(final, tuple) else [out, final]


@pytest.mark.parametrize("dtype", QUANT_DTYPES)
@pytest.mark.parametrize("mode,layers,bi,proj,use_lengths,batch_first", SWEEP)
def test_error_vs_float32_engine(dtype, mode, layers, bi, proj, use_lengths, batch_first):
    cls = lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU
    kwargs = {"proj_size": proj} if proj else {}
    model = cls(19, 40, num_layers=layers, bidirectional=bi, batch_first=batch_first, seed=3, **kwargs).eval()
    rng = np.random.default_rng(5)
    T, B = 20, 6
    x = rng.standard_normal((B, T, 19) if batch_first else (T, B, 19)).astype(np.float32)
    lengths = rng.integers(0, T + 1, size=B) if use_lengths else None
    hx = tuple(0.5 * rng.standard_normal(s.shape).astype(np.float32) for s in _flat(model(x))[1:])
    hx = hx if mode == "LSTM" else hx[0]
    x_before = x.copy()
    q = lstmkit.quantize(model, dtype)
    got, want = _flat(q(x, hx, lengths)), _flat(model(x, hx, lengths))
    np.testing.assert_array_equal(x, x_before)  # nothing the user gave is modified
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        assert _rel(g, w) < BOUND[dtype], (dtype, _rel(g, w))
    if use_lengths:  # outputs past a sequence's end are zero, as in the float model
        out = got[0] if not batch_first else got[0].transpose(1, 0, 2)
        for b, n in enumerate(lengths):
            assert not out[n:, b].any()


@pytest.mark.parametrize("dtype", QUANT_DTYPES)
def test_weights_really_are_smaller_and_quantised(dtype):
    model = lstmkit.LSTM(64, 128, seed=0).eval()
    q = lstmkit.quantize(model, dtype)
    float_bytes = 4 * (model.params["weight_ih_l0"].size + model.params["weight_hh_l0"].size)
    assert q.weight_bytes <= float_bytes * (0.3 if dtype == "int8" else 0.55)
    x = np.random.default_rng(0).standard_normal((10, 3, 64)).astype(np.float32)
    assert not np.array_equal(q(x)[0], model(x)[0])  # not silently the float path


@pytest.mark.parametrize("dtype", QUANT_DTYPES)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_same_bits_whatever_the_threads_and_the_layout(dtype, mode):
    """A batch large enough for the row split (each thread projecting its rows step by step), 3 layers,
    bidirectional: the same bits on one and two threads, and with lengths that are all T (the packed
    copies) as without lengths (x and out read and written in place)."""
    cls = lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU
    q = lstmkit.quantize(cls(24, 64, num_layers=3, bidirectional=True, seed=2).eval(), dtype)
    T, B = 6, 40
    x = np.random.default_rng(2).standard_normal((T, B, 24)).astype(np.float32)
    threads = engine.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            engine.set_num_threads(n)
            results += [_flat(q(x)), _flat(q(x, lengths=np.full(B, T)))]
    finally:
        engine.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_unbatched_input_and_copy_semantics():
    model = lstmkit.GRU(8, 16, num_layers=2, seed=1).eval()
    q = lstmkit.quantize(model, "int8")
    x = np.random.default_rng(1).standard_normal((12, 8)).astype(np.float32)
    out, h = q(x)
    assert out.shape == (12, 16) and h.shape == (2, 16)
    before = out.copy()
    model.params["weight_hh_l0"][:] = 0  # later changes to the model do not reach the quantised copy
    np.testing.assert_array_equal(q(x)[0], before)


def test_from_torch_modules():
    torch = pytest.importorskip("torch")
    from lstmkit import torch as lt

    x = np.random.default_rng(2).standard_normal((4, 9, 5)).astype(np.float32)
    for module in (torch.nn.LSTM(5, 24, num_layers=2, batch_first=True, proj_size=6),
                   torch.nn.GRU(5, 24, bidirectional=True, batch_first=True), lt.LSTM(5, 24, batch_first=True)):
        module.eval()
        with torch.no_grad():
            want = module(torch.from_numpy(x))[0].numpy()
        for dtype in QUANT_DTYPES:
            got = lstmkit.quantize(module, dtype)(torch.from_numpy(x))[0]
            assert got.shape == want.shape and _rel(got, want) < BOUND[dtype]


def test_bad_input():
    model = lstmkit.LSTM(4, 8, seed=0).eval()
    with pytest.raises(ValueError, match="dtype: expected one of"):
        lstmkit.quantize(model, "int4")
    with pytest.raises(TypeError, match="model: expected"):
        lstmkit.quantize(lstmkit.LSTMCell(4, 8), "int8")
    with pytest.raises(TypeError, match="model: expected"):
        lstmkit.quantize("lstm")
    q = lstmkit.quantize(model)
    x = np.zeros((5, 2, 4), np.float32)
    with pytest.raises(TypeError, match="input: expected dtype float32"):
        q(x.astype(np.float64))
    with pytest.raises(ValueError, match="input: expected 4 features"):
        q(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="lengths: expected values in"):
        q(x, lengths=[6, 1])
    with pytest.raises(ValueError, match="hx: expected h0 of shape"):
        q(x, (np.zeros((1, 3, 8), np.float32), np.zeros((1, 2, 8), np.float32)))
    bad = x.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="input: expected finite values"):
        q(bad)
    model.params["bias_ih_l0"][0] = np.inf
    with pytest.raises(ValueError, match="params: expected finite values.*bias_ih_l0"):
        lstmkit.quantize(model)
    with pytest.raises(TypeError, match="config: expected an lstmkit RNNConfig"):
        QuantizedRNN({}, {}, "int8")


def test_trained_model_keeps_its_accuracy():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait on each other

    def data(n):  # is the sum of channel 0 over the sequence positive?
        x = rng.standard_normal((n, 12, 3)).astype(np.float32)
        return x, (x[:, :, 0].sum(1) > 0).astype(np.int64)

    x_train, y_train = data(2048)
    x_test, y_test = data(1024)
    lstm, head = torch.nn.LSTM(3, 24, batch_first=True), torch.nn.Linear(24, 2)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for step in range(120):
        idx = torch.from_numpy(rng.integers(0, len(x_train), 128))
        loss = torch.nn.functional.cross_entropy(head(lstm(xt[idx])[1][0][-1]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    lstm.eval()
    w, b = head.weight.detach().numpy(), head.bias.detach().numpy()

    def accuracy(model):
        _, (h_n, _) = model(x_test)
        return float(((np.asarray(h_n[-1]) @ w.T + b).argmax(1) == y_test).mean())

    float_acc = accuracy(lstmkit.io.from_torch(lstm).eval())
    assert float_acc > 0.93, float_acc  # the task was learned, so the comparison means something
    for dtype in QUANT_DTYPES:
        acc = accuracy(lstmkit.quantize(lstm, dtype))
        assert acc >= float_acc - 0.01, (dtype, acc, float_acc)


@pytest.mark.parametrize("dtype", QUANT_DTYPES)
@pytest.mark.parametrize("mode,proj", [("LSTM", 0), ("LSTM", 5), ("GRU", 0)])
def test_stream_steps_give_the_sequence(dtype, mode, proj):
    cls = lstmkit.LSTM if mode == "LSTM" else lstmkit.GRU
    model = cls(6, 20, num_layers=2, seed=4, **({"proj_size": proj} if proj else {})).eval()
    q = lstmkit.quantize(model, dtype)
    x = np.random.default_rng(3).standard_normal((15, 3, 6)).astype(np.float32)
    s = q.stream(batch=3)
    steps = np.stack([s.step(x[t]) for t in range(15)])
    out, final = q(x)
    np.testing.assert_array_equal(steps, out)  # the same kernels, step by step
    state = s.state
    for got, want in zip(state, final if isinstance(final, tuple) else (final,)):
        np.testing.assert_array_equal(got, want)
    s.reset()
    assert not s.state[0].any()
    s.state = state  # round trip: the next step continues the sequence
    nxt = np.random.default_rng(4).standard_normal((1, 3, 6)).astype(np.float32)
    np.testing.assert_array_equal(s.step(nxt[0]), q(nxt, final)[0][0])
    with pytest.raises(ValueError, match=r"x: expected shape \(3, 6\)"):
        s.step(np.zeros((2, 6), np.float32))


def test_stream_refuses_bidirectional():
    q = lstmkit.quantize(lstmkit.GRU(4, 8, bidirectional=True, seed=0), "int8")
    with pytest.raises(ValueError, match="bidirectional model cannot be streamed"):
        q.stream()


def test_quantized_streams_refuse_what_their_codes_cannot_hold():
    """A quantised step takes each row's range for its 7-bit codes: a NaN would be skipped by the range and
    coded as the row's minimum (a finite, wrong output), so it is refused like QuantizedRNN.__call__ refuses it.
    A Stream made directly with a format gets QuantizedRNN's checks (int8 width, finite weights, the format)."""
    from lstmkit.stream import Stream

    model = lstmkit.GRU(4, 6, seed=0).eval()
    for dtype in QUANT_DTYPES:
        s = lstmkit.quantize(model, dtype).stream(1)
        for bad in (np.nan, np.inf, -np.inf):
            with pytest.raises(ValueError, match="x: expected finite values"):
                s.step(np.array([[0.5, bad, -0.3, 0.1]], np.float32))
            with pytest.raises(ValueError, match="state: expected finite values"):
                s.state = np.full((1, 1, 6), bad, np.float32)
        assert np.isfinite(s.step(np.ones((1, 4), np.float32))).all()  # the refusals left the stream usable
    wide = lstmkit.GRU(140_000, 1, seed=0)
    with pytest.raises(ValueError, match="config: int8 supports inputs up to 133144 wide"):
        Stream(wide.config, wide.params, 1, quantized="int8")
    params = {k: v.copy() for k, v in model.params.items()}
    params["weight_hh_l0"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params: expected finite values, got NaN or inf in \['weight_hh_l0'\]"):
        Stream(model.config, params, 1, quantized="bfloat16")
    with pytest.raises(ValueError, match="dtype: expected one of .* got True"):
        Stream(model.config, model.params, 1, quantized=True)


def test_quantize_reads_formats_and_modules_by_what_they_are():
    """The format as a name or the numpy / torch dtype of that name (numpy's dtype('int8') == "int8" once let it
    through to the native call); torch modules by class, so a subclass of torch.nn.LSTM is an LSTM and a
    subclass of LSTMCell is a cell, whatever their names; inputs in a float64 model's quantised copy are float32,
    and the message says that, not "the layer's dtype"."""
    torch = pytest.importorskip("torch")
    model = lstmkit.LSTM(4, 6, seed=0, dtype="float64").eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    want = lstmkit.quantize(model, "int8")(x)[0]
    for form in (np.dtype("int8"), np.int8, torch.int8):
        np.testing.assert_array_equal(lstmkit.quantize(model, form)(x)[0], want)
    assert lstmkit.quantize(model, torch.bfloat16).dtype == "bfloat16"
    for form in ("bf16", "INT8", None, np.dtype("float16")):
        with pytest.raises(ValueError, match="dtype: expected one of"):
            lstmkit.quantize(model, form)
    with pytest.raises(TypeError, match=r"input: expected dtype float32 \(a quantised model's inputs and states"):
        lstmkit.quantize(model)(x.astype(np.float64))

    class Encoder(torch.nn.LSTM):
        pass

    class MyLSTM(torch.nn.LSTMCell):
        pass

    encoder = Encoder(4, 6).eval()
    with torch.no_grad():
        float_out = encoder(torch.from_numpy(x))[0].numpy()
    assert _rel(lstmkit.quantize(encoder, "bfloat16")(x)[0], float_out) < BOUND["bfloat16"]
    with pytest.raises(TypeError, match=r"model: expected .* got MyLSTM \(cells are not quantised"):
        lstmkit.quantize(MyLSTM(4, 6))
    with pytest.raises(TypeError, match="expected a torch.nn or lstmkit.torch LSTM"):
        lstmkit.quantize(torch.nn.Linear(4, 6))


def _env(isa: str, int8_kernel: str | None = None) -> dict:
    env = dict(os.environ, LSTMKIT_ISA=isa)
    env.pop("LSTMKIT_INT8_KERNEL", None)
    if int8_kernel:
        env["LSTMKIT_INT8_KERNEL"] = int8_kernel
    src = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


# One run per instruction-set path (LSTMKIT_ISA in a subprocess): the quantised products of a few shapes,
# with their operands, and a quantised model beside its float32 self on that path.
_PROBE = """
import sys, numpy as np
from lstmkit import _engine, engine
import lstmkit
rng = np.random.default_rng(11)
out = {"isa": np.array(engine.isa()), "quant_isa": np.array(_engine.quant_isa()),
       "qkernel": np.array(_engine.quant_int8_kernel())}
for M, K, N in PRODUCTS:
    x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 5, (M, 1))).astype(np.float32)
    x[0, : K // 2] = np.abs(x[0, : K // 2])  # a one-sided row: zero point 0
    x[-1] *= np.float32(1e-37)  # a row of (sub)normal tiny values: treated as zeros, no overflow
    w = rng.standard_normal((N, K)).astype(np.float32)
    w[0] = 0.0  # an all-zero channel
    out[f"x_{M}_{K}_{N}"], out[f"w_{M}_{K}_{N}"] = x, w
    for dtype in ("int8", "bfloat16"):
        y = np.full((M, N), np.nan, np.float32)  # set, never read: a NaN left or added shows
        _engine.quant_linear(dtype, x, w, y)
        out[f"{dtype}_{M}_{K}_{N}"] = y
model = lstmkit.LSTM(19, 48, num_layers=2, bidirectional=True, proj_size=20, seed=2).eval()
xs = rng.standard_normal((15, 9, 19)).astype(np.float32)
lengths = rng.integers(0, 16, 9)
out["model_float32"] = model(xs, lengths=lengths)[0]
for dtype in ("int8", "bfloat16"):
    out["model_" + dtype] = lstmkit.quantize(model, dtype)(xs, lengths=lengths)[0]
np.savez(sys.argv[1], **out)
""".replace("PRODUCTS", "((1, 5, 3), (6, 9, 20), (7, 70, 45), (13, 256, 1030), (64, 33, 17), (17, 64, 48), "
           "(40, 31, 33), (33, 100, 70))")  # the last three: AMX's blocks of 2 row tiles × 1 panel, 1 × 3, part rows


@pytest.fixture(scope="module")
def isa_runs(tmp_path_factory):
    """{(isa, int8 kernel): the probe's arrays} for every float path this CPU runs (the AVX2 path with each of its
    int8 inner loops, LSTMKIT_INT8_KERNEL), computed once per pair on demand."""
    runs = {}

    def run(isa, int8_kernel=None):
        key = (isa, int8_kernel)
        if key not in runs:
            f = tmp_path_factory.mktemp("isa") / f"{isa}-{int8_kernel}.npz"
            proc = subprocess.run([sys.executable, "-c", _PROBE, str(f)], env=_env(isa, int8_kernel),
                                  capture_output=True, text=True)
            assert proc.returncode == 0, f"probe on the {isa} path failed:\n{proc.stderr[-3000:]}"
            runs[key] = dict(np.load(f))
            assert str(runs[key]["isa"]) == isa, f"LSTMKIT_ISA={isa} ran the {runs[key]['isa']} path"
            if int8_kernel and str(runs[key]["quant_isa"]) == "avx2":
                assert str(runs[key]["qkernel"]) == int8_kernel, "LSTMKIT_INT8_KERNEL was not followed"
        return runs[key]
    return run


def bf16_product_bound(x: np.ndarray, w: np.ndarray, rounds_rows: bool) -> np.ndarray:
    """Elementwise bound on |bf16 product − exact x·wᵀ| (M, N), from the arithmetic, for any summation order.

    Rounding a float32 to bf16 (8 significant bits, nearest even) changes it by at most half a unit in the last
    place, u = 2⁻⁸ relative (ulp(1) = 2⁻⁷). The
    weights are always rounded; the AVX-512 BF16 path (vdpbf16ps, bf16 × bf16) rounds the rows of x too, so a
    term x_k·w_k is off by (1+u)² − 1 = 2u + u² relative there, u elsewhere. The products of two bf16 numbers
    are exact in float32, and summing K terms in float32, in any order, with or without FMA, adds at most
    γ = (K+2)·2⁻²⁴ of Σ|x_k·w_k|. vdpbf16ps treats subnormal inputs and results as zero: at most 2⁻¹²⁶·(1+|w_k|)
    per term, absolute.
    """
    u = 2.0**-8
    rel = (2 * u + u * u if rounds_rows else u) + (x.shape[1] + 2) * 2.0**-24
    magnitude = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    return rel * magnitude + x.shape[1] * 2.0**-126 * (1 + np.abs(w).max())


# The paths whose bf16 products round the activation rows too (bf16 × bf16: vdpbf16ps, tdpbf16ps).
ROUNDS_ROWS = ("avx512", "amx")


@pytest.mark.parametrize("isa, int8_kernel", [("scalar", None), ("avx2", "madd"), ("avx2", "pairs"), ("avx512", None),
                                              ("amx", None)])
def test_quantised_products_on_every_isa(isa, int8_kernel, isa_runs):
    """Each instruction-set path this CPU runs, against float64 and against the portable path:
    bf16 products within the bound derived from their rounding (which depends on the path: the AVX-512 BF16
    instruction rounds the activations too), int8 products bit-identical to the portable path's (exact integer
    sums, the same float dequantisation), and the quantised model within the documented error bounds of its
    float32 self. A failure names the path and the key."""
    if isa not in engine.supported_isas():
        pytest.skip(f"this CPU does not run the {isa} path (it runs {engine.supported_isas()})")
    got = isa_runs(isa, int8_kernel)
    portable = isa_runs("scalar")
    quant_isa = f"{got['quant_isa']}, int8 {got['qkernel']}"
    for key in (k for k in got if k.startswith("bfloat16_")):
        shape = key.split("_", 1)[1]
        x, w = got["x_" + shape], got["w_" + shape]
        exact = x.astype(np.float64) @ w.astype(np.float64).T
        excess = np.abs(got[key] - exact) - bf16_product_bound(x, w, rounds_rows=str(got["quant_isa"]) in ROUNDS_ROWS)
        assert excess.max() <= 0, f"{isa} path (quant {quant_isa}) {key}: over the bound by {excess.max():.3g}"
    for key in (k for k in got if k.startswith("int8_")):
        np.testing.assert_array_equal(got[key], portable[key], err_msg=f"{isa} path (quant {quant_isa}) {key}")
    for dtype in QUANT_DTYPES:
        err = _rel(got["model_" + dtype], got["model_float32"])
        assert err < BOUND[dtype], f"{isa} path (quant {quant_isa}) model_{dtype}: {err:.3g} >= {BOUND[dtype]}"
    # tanh/σ differ in the last ulp between paths, which can move an int8 activation code by one step: far
    # below the int8 error itself
    np.testing.assert_allclose(got["model_int8"], portable["model_int8"], atol=2e-3,
                               err_msg=f"{isa} path (quant {quant_isa}) model_int8 vs the portable path")


def test_amx_tiles_are_configured_per_call():
    """The AMX path configures the tiles at every product and releases them after: torch's own AMX kernels
    (oneDNN's bf16 matmul, on the same thread) in between change nothing, and a forked child (which inherits the
    process's tile permission) computes the same bits. On a CPU without AMX, the same holds for its path."""
    import multiprocessing

    import torch

    model = lstmkit.LSTM(40, 64, num_layers=2, seed=5).eval()
    x = np.random.default_rng(5).standard_normal((12, 20, 40)).astype(np.float32)
    want = {dtype: lstmkit.quantize(model, dtype)(x)[0] for dtype in QUANT_DTYPES}
    a = torch.randn(64, 256, dtype=torch.bfloat16)
    for dtype in QUANT_DTYPES:
        q = lstmkit.quantize(model, dtype)
        for _ in range(3):
            (a @ a.T).sum()  # oneDNN, AMX where the CPU has it: configures the tiles its own way
            np.testing.assert_array_equal(q(x)[0], want[dtype], err_msg=f"{engine.isa()} path, {dtype}")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.map(_quantised_output, [(model, x, dtype) for dtype in QUANT_DTYPES])
    for dtype, out in zip(QUANT_DTYPES, got):
        np.testing.assert_array_equal(out, want[dtype], err_msg=f"{engine.isa()} path, {dtype}, forked child")


def _quantised_output(args):
    model, x, dtype = args
    return lstmkit.quantize(model, dtype)(x)[0]
