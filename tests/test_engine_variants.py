"""The native engine's LSTM/GRU variants (docs/variants.md) against the NumPy reference.

Parity: forward output, final states and every gradient (input, initial state, each parameter including
peephole and layer-norm ones), over each option alone and a seeded sweep of random combinations with
lengths, bidirectional, 2 layers and proj_size, with training masks (sampled) and in evaluation (None).
Tolerances (elementwise |engine − ref| ≤ atol + rtol·|ref|): float64 rtol 1e-10, atol 1e-10;
float32 rtol 1e-4, atol 1e-4 (gradients sum over steps and batch; float32 σ/tanh are SIMD polynomials).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmkit import engine, ref
from lstmkit.params import RNNConfig, init_params
from lstmkit.ref import variants
from lstmkit.ref.activations import TABLE

ROOT = Path(__file__).resolve().parents[1]
TOL = {"float64": dict(rtol=1e-10, atol=1e-10), "float32": dict(rtol=1e-4, atol=1e-4)}

LSTM_OPTIONS = [
    dict(peephole=True), dict(input_forget=True), dict(clip=0.6), dict(layer_norm=True),
    dict(zoneout=(0.3, 0.2)), dict(zoneout=(0.4, 0.0)), dict(zoneout=(0.0, 0.4)), dict(recurrent_dropout=0.3),
    dict(activations=("HardSigmoid", "Relu", "Softsign")), dict(activations=(("LeakyRelu", 0.1), "Elu", "Softplus")),
    dict(activations=("Sigmoid", ("ScaledTanh", 0.8, 1.3), ("Affine", 0.7, 0.1))),
    dict(activations=("Sigmoid", ("ThresholdedRelu", 0.2), "Tanh")),
]
GRU_OPTIONS = [
    dict(clip=0.6), dict(layer_norm=True), dict(zoneout=(0.0, 0.3)), dict(recurrent_dropout=0.3),
    dict(linear_before_reset=False), dict(linear_before_reset=False, recurrent_dropout=0.25, clip=0.8),
    dict(activations=("HardSigmoid", "Softsign")), dict(activations=(("LeakyRelu", 0.2), ("ScaledTanh", 1.1, 0.9))),
]


@pytest.fixture(autouse=True)
def _engine_built():
    assert engine.available(), "lstmkit._engine is not built: build it before running the engine tests"


def make_case(config: RNNConfig, dtype: str, seed: int, steps=5, batch=4, lengths=None, state=True):
    """Parameters (perturbed away from the layer-norm identity init), x, state0, d_output, d_final."""
    rng = np.random.default_rng(seed)
    params = init_params(config, seed=seed, dtype=dtype)
    params = {k: (v + rng.normal(0, 0.3, v.shape)).astype(dtype) for k, v in params.items()}
    x = rng.standard_normal((steps, batch, config.input_size)).astype(dtype)
    zeros = ref.zero_state(config, batch, dtype)
    state0 = tuple(rng.standard_normal(s.shape).astype(dtype) for s in zeros) if state else None
    d_final = tuple(rng.standard_normal(s.shape).astype(dtype) for s in zeros)
    d_out = rng.standard_normal((steps, batch, config.num_directions * config.output_size)).astype(dtype)
    return params, x, state0, lengths, d_out, d_final, rng


def check_parity(config, dtype, seed, train, **case):
    params, x, state0, lengths, d_out, d_final, rng = make_case(config, dtype, seed, **case)
    T, B = x.shape[:2]
    masks = variants.sample_masks(config, T, B, rng, dtype) if train else None
    out, final, cache = ref.forward(config, params, x, state0, lengths, None, masks)
    dx, d_state0, grads = ref.backward(cache, d_out, d_final)
    e_out, e_final = engine.forward(config, params, x, state0, lengths, masks)
    t_out, t_final, workspace = engine.train_forward(config, params, x, state0, lengths, masks)
    e_dx, e_d_state0, e_grads = engine.backward(config, params, x, d_out, d_final, state0, lengths, masks,
                                                workspace=workspace)
    tol = TOL[dtype]
    what = f"{config.mode} {config.variant_options()} {dtype} train={train}"
    assert e_out.dtype == np.dtype(dtype)
    # the training forward computes what the forward does, bit for bit, and keeps its tape
    np.testing.assert_array_equal(t_out, e_out, err_msg=f"train_forward output, {what}")
    for a, b in zip(t_final, e_final):
        np.testing.assert_array_equal(a, b, err_msg=f"train_forward final state, {what}")
    recurrent = masks is not None and masks.recurrent is not None
    assert workspace.shape == (engine.workspace_size(config, T, B, recurrent),)
    np.testing.assert_allclose(e_out, out, **tol, err_msg=f"output, {what}")
    for a, b in zip(e_final, final):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"final state, {what}")
    np.testing.assert_allclose(e_dx, dx, **tol, err_msg=f"dx, {what}")
    for a, b in zip(e_d_state0, d_state0):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"d_state0, {what}")
    assert set(e_grads) == set(grads) == set(params)
    for name in grads:
        np.testing.assert_allclose(e_grads[name], grads[name], **tol, err_msg=f"grad {name}, {what}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mode, options", [("LSTM", o) for o in LSTM_OPTIONS] + [("GRU", o) for o in GRU_OPTIONS],
                         ids=lambda v: str(v))
def test_parity_each_option(mode, options, train, dtype):
    config = RNNConfig(mode, 3, 5, **options)
    check_parity(config, dtype, seed=len(str(options)), train=train)


def random_config(seed: int) -> tuple[RNNConfig, str, dict]:
    """A random variant configuration (several options at once), dtype and case sizes."""
    rng = np.random.default_rng(seed)
    mode = ("LSTM", "GRU")[seed % 2]
    dtype = ("float64", "float32")[(seed // 2) % 2]
    H = int(rng.integers(2, 9))
    pool = LSTM_OPTIONS if mode == "LSTM" else GRU_OPTIONS
    options = {}
    for k in rng.choice(len(pool), size=int(rng.integers(2, 5)), replace=False):
        options.update(pool[k])
    if options.get("layer_norm") and options.get("linear_before_reset") is False:
        del options["layer_norm"]
    config = RNNConfig(mode, int(rng.integers(1, 6)), H, num_layers=int(rng.integers(1, 3)),
                       bias=bool(rng.random() < 0.8), bidirectional=bool(rng.random() < 0.5),
                       proj_size=int(rng.integers(1, H)) if mode == "LSTM" and rng.random() < 0.4 else 0, **options)
    T, B = int(rng.integers(1, 7)), int(rng.integers(1, 6))
    lengths = rng.integers(0, T + 1, size=B) if rng.random() < 0.6 else None
    return config, dtype, dict(steps=T, batch=B, lengths=lengths, state=bool(rng.random() < 0.7))


@pytest.mark.parametrize("seed", range(24))
def test_parity_random_combinations(seed):
    config, dtype, case = random_config(seed)
    check_parity(config, dtype, seed, train=seed % 3 != 0, **case)


def test_parity_everything_at_once():
    for config in (
        RNNConfig("LSTM", 4, 6, 2, bidirectional=True, proj_size=3, peephole=True, input_forget=True, clip=1.5,
                  layer_norm=True, zoneout=(0.2, 0.3), recurrent_dropout=0.2,
                  activations=("HardSigmoid", "Softsign", "Elu")),
        RNNConfig("GRU", 4, 6, 2, bidirectional=True, clip=1.5, layer_norm=True, zoneout=(0.0, 0.3),
                  recurrent_dropout=0.2, activations=("HardSigmoid", "Softsign")),
    ):
        for dtype in ("float64", "float32"):
            check_parity(config, dtype, 7, train=True, steps=6, batch=5, lengths=np.array([6, 0, 3, 6, 1]))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_parity_threaded_batch_split(mode):
    """A batch large enough for the row split over the thread pool (rnn.h's batch_split)."""
    n = engine.get_num_threads()
    engine.set_num_threads(2)
    try:
        options = dict(layer_norm=True, zoneout=(0.0, 0.2), recurrent_dropout=0.2)
        if mode == "LSTM":
            options.update(peephole=True, zoneout=(0.1, 0.2))
        config = RNNConfig(mode, 8, 64, **options)
        check_parity(config, "float64", 3, train=True, steps=3, batch=40, lengths=np.arange(40) % 4)
    finally:
        engine.set_num_threads(n)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_same_bits_on_one_and_two_threads(mode):
    """Without lengths, the variant kernels give the same bits whatever the thread count (the batch
    split of the time loop, the split input projection and the split backward products)."""
    options = dict(layer_norm=True, zoneout=(0.0, 0.2), recurrent_dropout=0.2, clip=2.0)
    if mode == "LSTM":
        options.update(peephole=True, zoneout=(0.1, 0.2), proj_size=24)
    config = RNNConfig(mode, 8, 32, num_layers=2, bidirectional=True, **options)
    params, x, state0, _, d_out, d_final, rng = make_case(config, "float32", 5, steps=7, batch=41)
    masks = variants.sample_masks(config, 7, 41, rng, "float32")
    n = engine.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            engine.set_num_threads(threads)
            out, final, ws = engine.train_forward(config, params, x, state0, None, masks)
            results.append((out, *final, ws, *engine.backward(config, params, x, d_out, d_final, state0, None, masks,
                                                              workspace=ws)))
    finally:
        engine.set_num_threads(n)
    one, two = results
    for a, b in zip(one[:-1], two[:-1]):
        for u, v in (zip(a, b) if isinstance(a, tuple) else [(a, b)]):
            np.testing.assert_array_equal(u, v)
    for name in params:
        np.testing.assert_array_equal(one[-1][name], two[-1][name], err_msg=name)



@pytest.mark.parametrize("mode, options", [
    ("LSTM", dict(peephole=True, clip=0.5, zoneout=(0.1, 0.2), recurrent_dropout=0.2)),
    ("LSTM", dict(input_forget=True, activations=("HardSigmoid", "Softsign", "Elu"))),
    ("GRU", dict(clip=0.5, zoneout=(0.0, 0.2), recurrent_dropout=0.2, activations=("HardSigmoid", "Elu"))),
])
def test_lockstep_pair(mode, options):
    """B = 1 and 2 at H = 128 take the small-batch schedule, forward and backward: each step split by hidden
    units over two threads that meet once per step (the lockstep pair). It agrees with the reference (with
    lengths too: steps of one row) and gives the bits of one thread."""
    config = RNNConfig(mode, 8, 128, **options)
    n = engine.get_num_threads()
    results = []
    try:
        engine.set_num_threads(2)
        check_parity(config, "float64", 11, train=True, steps=4, batch=2, lengths=np.array([4, 2]))
        for threads in (1, 2):
            engine.set_num_threads(threads)
            params, x, state0, _, d_out, d_final, rng = make_case(config, "float32", 5, steps=5, batch=1)
            masks = variants.sample_masks(config, 5, 1, rng, "float32")
            _, _, ws = engine.train_forward(config, params, x, state0, None, masks)
            results.append(engine.backward(config, params, x, d_out, d_final, state0, None, masks, workspace=ws))
    finally:
        engine.set_num_threads(n)
    (dx1, ds1, g1), (dx2, ds2, g2) = results
    np.testing.assert_array_equal(dx1, dx2)
    for u, v in zip(ds1, ds2):
        np.testing.assert_array_equal(u, v)
    for name in g1:
        np.testing.assert_array_equal(g1[name], g2[name], err_msg=name)

def test_every_activation_is_covered():
    used = {a if isinstance(a, str) else a[0] for o in LSTM_OPTIONS + GRU_OPTIONS for a in o.get("activations", ())}
    assert used == set(TABLE)


def test_supports():
    assert engine.supports(RNNConfig("LSTM", 2, 3))
    assert engine.supports(RNNConfig("GRU", 2, 3, layer_norm=True, zoneout=(0.0, 0.5)))


def test_mask_errors_are_named():
    config = RNNConfig("LSTM", 3, 4, zoneout=(0.2, 0.2))
    params, x, state0, _, _, _, rng = make_case(config, "float64", 0)
    masks = variants.sample_masks(config, 5, 4, rng, "float64")
    bad = variants.VariantMasks(None, [masks.zoneout_c[0][:, :2]], masks.zoneout_h)
    with pytest.raises(ValueError, match=r"variant_masks.zoneout_c\[0\]: expected shape \(5, 4, 4\)"):
        engine.forward(config, params, x, state0, None, bad)
    bad = variants.VariantMasks(None, masks.zoneout_c * 2, masks.zoneout_h)
    with pytest.raises(ValueError, match="variant_masks.zoneout_c: expected a list of 1 masks"):
        engine.forward(config, params, x, state0, None, bad)
    bad = variants.VariantMasks(None, [masks.zoneout_c[0].astype("float32")], masks.zoneout_h)
    with pytest.raises(TypeError, match=r"variant_masks.zoneout_c\[0\]: expected dtype float64"):
        engine.forward(config, params, x, state0, None, bad)
    with pytest.raises(TypeError, match="variant_masks: expected"):
        engine.forward(config, params, x, state0, None, "masks")
    gru = RNNConfig("GRU", 3, 4, zoneout=(0.0, 0.2))
    params, x, state0, *_ = make_case(gru, "float64", 0)
    with pytest.raises(ValueError, match="zoneout_c: expected None for a GRU"):
        engine.forward(gru, params, x, state0, None, variants.VariantMasks(None, [np.zeros((5, 4, 4))], None))


def test_masks_given_field_by_field_as_the_reference():
    """A field left None in given masks means no zoneout there (as the reference), not its expectation."""
    config = RNNConfig("LSTM", 3, 4, zoneout=(0.3, 0.2), recurrent_dropout=0.2)
    params, x, state0, _, _, _, rng = make_case(config, "float64", 2)
    full = variants.sample_masks(config, 5, 4, rng, "float64")
    for masks in (variants.VariantMasks(full.recurrent, full.zoneout_c, None),
                  variants.VariantMasks(None, None, full.zoneout_h)):
        expected = ref.forward(config, params, x, state0, None, None, masks)[0]
        np.testing.assert_allclose(engine.forward(config, params, x, state0, None, masks)[0], expected,
                                   **TOL["float64"])


@pytest.mark.parametrize("mode, options", [
    ("LSTM", dict(layer_norm=True, peephole=True, zoneout=(0.2, 0.1), recurrent_dropout=0.3, clip=0.9, proj_size=2)),
    ("GRU", dict(linear_before_reset=False, recurrent_dropout=0.25, clip=0.8, activations=("HardSigmoid", "Softsign"))),
    ("GRU", dict(layer_norm=True, zoneout=(0.0, 0.3))),
], ids=["lstm", "gru-lbr-false", "gru-ln"])
def test_workspace_backward_equals_recomputed(mode, options):
    """A backward from train_forward's workspace gives the bits of one that runs the training forward
    itself; the workspace is fully defined (two runs agree, rows past the lengths are zeros) and is
    not written by the backward; a workspace of another size is refused, naming it."""
    config = RNNConfig(mode, 3, 4, num_layers=2, bidirectional=True, **options)
    params, x, state0, _, d_out, d_final, rng = make_case(config, "float32", 3, steps=6, batch=5)
    lengths = np.array([6, 2, 0, 5, 3])
    masks = variants.sample_masks(config, 6, 5, rng, "float32")
    _, _, workspace = engine.train_forward(config, params, x, state0, lengths, masks)
    np.testing.assert_array_equal(engine.train_forward(config, params, x, state0, lengths, masks)[2], workspace)
    kept = workspace.copy()
    saved = engine.backward(config, params, x, d_out, d_final, state0, lengths, masks, workspace=workspace)
    again = engine.backward(config, params, x, d_out, d_final, state0, lengths, masks)
    np.testing.assert_array_equal(workspace, kept)
    np.testing.assert_array_equal(saved[0], again[0])
    for name in params:
        np.testing.assert_array_equal(saved[2][name], again[2][name], err_msg=name)
    # lengths sum to 16 of the 30 rows: the tape's fields end in zeros, not left-over memory
    assert np.count_nonzero(workspace) < workspace.size
    with pytest.raises(ValueError, match="workspace: expected shape"):
        engine.backward(config, params, x, d_out, d_final, state0, lengths, masks, workspace=workspace[:-1])
    if mode == "GRU" and config.recurrent_dropout:  # a GRU keeps h beside m_rd ⊙ h only with recurrent masks
        with pytest.raises(ValueError, match="workspace: expected shape"):
            engine.backward(config, params, x, d_out, d_final, state0, lengths, None, workspace=workspace)


def test_inputs_not_modified():
    config = RNNConfig("LSTM", 3, 4, layer_norm=True, peephole=True, zoneout=(0.2, 0.2), recurrent_dropout=0.3)
    params, x, state0, _, d_out, d_final, rng = make_case(config, "float32", 1)
    masks = variants.sample_masks(config, 5, 4, rng, "float32")
    before = [a.copy() for a in (*params.values(), x, *state0, d_out, *d_final, *masks.recurrent, *masks.zoneout_c)]
    engine.forward(config, params, x, state0, None, masks)
    engine.backward(config, params, x, d_out, d_final, state0, None, masks)
    after = [*params.values(), x, *state0, d_out, *d_final, *masks.recurrent, *masks.zoneout_c]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_parity_under_scalar_isa():
    """The baseline (SSE2) build of the variant kernels passes the same sweep."""
    env = dict(os.environ, LSTMKIT_ISA="scalar")
    src = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-x", "-p", "no:cacheprovider",
         "-k", "random_combinations or everything_at_once"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
