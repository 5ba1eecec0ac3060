"""Every variant option (alone and combined) × every entry point, against the NumPy reference.

Each cell of the matrix (option set × entry point) must either agree with the reference within a
tolerance derived from its arithmetic, or raise an error whose message names the path and one of the
option set's options (a refusal). Anything else is "wrong": a silent mismatch, or an error that names
neither (such as "weights: expected 4 arrays, got 5"); the test fails on any wrong cell.

Option sets (``OPTION_SETS``): every option of docs/variants.md alone (LSTM: peephole, input_forget, clip,
activations, layer_norm, zoneout, recurrent_dropout, forget_bias; GRU: clip, activations, layer_norm, zoneout,
recurrent_dropout, linear_before_reset=False), the plain cells, and combinations with proj_size,
bidirectional, two layers and inter-layer dropout.

Entry points (``ENTRIES``) and their tolerances. T = 5 steps, B = 3, I = 3, H = 5 (P = 3 with proj_size):

* forward / backward: lstmkit.LSTM/GRU (float64, native engine) in training mode (masks replayed from the
  layer's rng) against ref.forward / ref.backward (BPTT) with the same masks; eval-mode forward too.
* stream: ``layer.stream()`` stepped T times against the eval-mode layer (bidirectional must refuse).
* torch_stream: the same through ``lstmkit.torch.LSTM/GRU.stream()`` (tensors in and out).
* quantize_bf16 / quantize_int8: ``lstmkit.quantize`` against the float32 eval-mode layer, max |q − f| /
  max |f| within tests/test_quantize.py's bounds (1e-2 and 3e-2).
* torch_train / torch_eval: lstmkit.torch module (float64) against the reference, training masks drawn
  with torch's RNG and replayed; gradients of x and every parameter against ref.backward.
* torch_checkpoint: torch_train through ``torch.utils.checkpoint(..., use_reentrant=False)`` (activation
  checkpointing: the forward runs again in the backward, with the RNG state restored).
* torch_compile / torch_export: ``torch.compile(fullgraph=True)`` and ``torch.export.export`` of the eval
  module (these are slow, so only ``SLOW_SUBSET``: plain LSTM and GRU, one LSTM and one GRU with most options,
  and the two-layer bidirectional LSTM).
* bf16_train: ``engine.train_forward`` / ``backward`` with ``precision="bfloat16"`` (float32 parameters, the
  layer's inter-layer dropout masks) against the float64 reference within tests/test_bf16_training.py's bounds
  (1e-2 of the largest output, 2e-2 of the largest gradient); the cells without bf16 products refuse by name.
* torch_autocast_train: the float32 module trained under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (B = 4,
  where bf16 products start): within the same bounds where the cells have them, float32's own bits elsewhere.
* onnx: ``lstmkit.io.to_onnx`` run by onnxruntime (float32) against the eval-mode layer.
* onnx_import: ``lstmkit.io.to_onnx`` read back by ``lstmkit.io.from_onnx``: the same config (its metadata keeps
  the training-only options) and, in eval mode, the reference's output (float32 tolerance); the graph without
  lstmkit's metadata (as another tool would write it) too, where the options are the nodes' attributes (a Scan
  graph without metadata is not an RNN lstmkit can name, and must be refused, not misread).
* torch_onnx: ``torch.onnx.export`` (the TorchScript exporter; the dynamo one is tests/test_torch_onnx_export.py's)
  of the float32 eval module itself, run by onnxruntime against the reference (float32 tolerance); options with no
  ONNX node must be refused by name (the dynamo exporter writes them as a Scan).
* keras: ``lstmkit.io.to_keras`` run by Keras 3 (float32) against the eval-mode layer's reference (Keras has no
  projection and no variant option, which it must refuse by name), and read back by ``from_keras``: the same output.
* save_load: safetensors round trip: same config, bit-equal parameters and output.
* task_checkpoint: the lstmkit.torch module inside a task model, saved by ``lstmkit.tasks.checkpoint`` and read by
  ``lstmkit.load`` (what report / explain open): the same config (its ``rnn_configs``), the reference's eval output.
* trace: ``lstmkit.introspect.trace``: h and c at every step against the reference run step by step, and the
  gates tied to them by the cell's own identities (c̃ = f ⊙ c + i ⊙ g, f = 1 − i with input_forget,
  h̃ = (1 − z) ⊙ n + z ⊙ h, zoneout mixing by its expectation).
* to_torch_nn / from_torch: torch.nn.LSTM/GRU out of the layer (must refuse what torch.nn lacks) and
  lstmkit.torch → lstmkit numpy layer → same forward.

Tolerances: float64 paths rtol = atol = 1e-9: the engine sums in another order than NumPy, each product
of K ≤ 10 terms is off by ~K·2^-53 relative, compounded over T = 5 steps through gates of slope ≤ 1.3
(the scaled activations) and layer norm's 1/σ ≈ a few: ~1e-13, so 1e-9 leaves room and still catches any
wrong equation (those differ by > 1e-3 here). float32 paths (onnx) rtol 1e-5, atol 2e-6 (2^-24·K·T·growth).

Run ``python tests/test_composition.py`` to print the whole matrix and its counts (agree / refuse / wrong).
"""
from __future__ import annotations

import copy
import os
import sys
import tempfile
from collections import Counter

import numpy as np
import pytest

import lstmkit
from lstmkit import engine, ref
from lstmkit.params import VARIANT_DEFAULTS
from lstmkit.ref import variants

T, B, I, H = 5, 3, 3, 5
LENGTHS = np.array([5, 2, 4])
TOL64 = dict(rtol=1e-9, atol=1e-9)
TOL32 = dict(rtol=1e-5, atol=2e-6)
QUANT_BOUND = {"bfloat16": 1e-2, "int8": 3e-2}  # tests/test_quantize.py's bounds (max error / max |f|)
BF16_TRAIN_BOUND = (1e-2, 2e-2)  # tests/test_bf16_training.py's bounds: outputs, gradients (max error / max |ref|)

OPTION_SETS = {
    "LSTM-plain": ("LSTM", {}),
    "LSTM-peephole": ("LSTM", dict(peephole=True)),
    "LSTM-input_forget": ("LSTM", dict(input_forget=True)),
    "LSTM-clip": ("LSTM", dict(clip=0.1)),
    "LSTM-activations": ("LSTM", dict(activations=("HardSigmoid", "Softsign", ("ScaledTanh", 0.7, 1.3)))),
    "LSTM-layer_norm": ("LSTM", dict(layer_norm=True)),
    "LSTM-zoneout": ("LSTM", dict(zoneout=(0.3, 0.2))),
    "LSTM-recurrent_dropout": ("LSTM", dict(recurrent_dropout=0.25)),
    "LSTM-forget_bias": ("LSTM", dict(forget_bias=1.0)),
    "LSTM-proj+peephole+clip": ("LSTM", dict(proj_size=3, peephole=True, clip=0.5)),
    "LSTM-bi+layer_norm+zoneout": ("LSTM", dict(bidirectional=True, layer_norm=True, zoneout=(0.2, 0.1))),
    "LSTM-2layer+dropout+peephole+rd": ("LSTM", dict(num_layers=2, dropout=0.3, peephole=True,
                                                      recurrent_dropout=0.2)),
    "LSTM-2layer+dropout": ("LSTM", dict(num_layers=2, dropout=0.3)),
    "GRU-plain": ("GRU", {}),
    "GRU-clip": ("GRU", dict(clip=0.1)),
    "GRU-activations": ("GRU", dict(activations=("HardSigmoid", "Softplus"))),
    "GRU-layer_norm": ("GRU", dict(layer_norm=True)),
    "GRU-zoneout": ("GRU", dict(zoneout=(0.0, 0.3))),
    "GRU-recurrent_dropout": ("GRU", dict(recurrent_dropout=0.3)),
    "GRU-linear_before_reset": ("GRU", dict(linear_before_reset=False)),
    "GRU-bi+lbr+clip": ("GRU", dict(bidirectional=True, linear_before_reset=False, clip=0.5)),
    "GRU-2layer+dropout+ln+zoneout": ("GRU", dict(num_layers=2, dropout=0.3, layer_norm=True, zoneout=(0.0, 0.2))),
}
SLOW_SUBSET = ("LSTM-plain", "GRU-plain", "LSTM-proj+peephole+clip", "GRU-2layer+dropout+ln+zoneout",
               "LSTM-bi+layer_norm+zoneout")
# words that name a structural option in a refusal (besides the variant options themselves)
STRUCTURE = {"bidirectional": ("bidirectional",), "num_layers": (), "dropout": ("dropout",), "proj_size": ("proj",)}


class Refused(Exception):
    """An entry point refused the option set with an error naming an option and the path."""


# --------------------------------------------------------------------------------------------- helpers

def make_layer(name, dtype="float64", seed=1):
    """The option set's lstmkit layer with its variant parameters moved away from their 0/1 initialisation."""
    mode, options = OPTION_SETS[name]
    layer = getattr(lstmkit, mode)(I, H, dtype=dtype, seed=seed, **options)
    rng = np.random.default_rng(seed + 100)
    for key, value in layer.params.items():
        if key.startswith(("peephole", "ln_")):
            layer.params[key] = (value + rng.normal(0, 0.3, value.shape)).astype(dtype)
    return layer


def inputs(dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(dtype)


def option_words(name) -> list[str]:
    """The words one of which a refusal of this option set must contain."""
    _, options = OPTION_SETS[name]
    words = [k for k in options if k in VARIANT_DEFAULTS]
    for k in options:
        words += STRUCTURE.get(k, ())
    return words


def close(got, want, tol, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), err_msg=what, **tol)


def state_tuple(mode, state):
    return tuple(state) if mode == "LSTM" else (state,)


def eval_reference(layer, x, lengths=None):
    """The reference's eval-mode forward of ``layer``: (output, final state tuple) in x's dtype."""
    params = {k: np.asarray(v, x.dtype) for k, v in layer.params.items()}
    out, final, _ = ref.forward(layer.config, params, x, None, lengths)
    return out, final


# ------------------------------------------------------------------------------------------ entry points

def train_step(name):
    """A training-mode forward of the option set's NumPy layer and the reference's forward with the same
    masks (replayed from the layer's rng) -> (layer, x, (out, state), (ref out, ref final, ref cache))."""
    layer = make_layer(name)
    x = inputs()
    rng_before = copy.deepcopy(layer.rng)
    out, state = layer(x, lengths=LENGTHS)
    replay = copy.copy(layer)
    replay.rng = rng_before
    drop, vm = replay._dropout_masks(T, B), replay._variant_masks(T, B)
    return layer, x, (out, state), ref.forward(layer.config, layer.params, x, None, LENGTHS, drop, vm)


def entry_forward(name):
    """Training-mode and eval-mode forward of the NumPy layer against ref.forward with the same masks."""
    layer, x, (out, state), (r_out, r_final, _) = train_step(name)
    close(out, r_out, TOL64, "train output")
    for a, b in zip(state_tuple(layer.mode, state), r_final):
        close(a, b, TOL64, "train final state")
    layer.eval()
    out, state = layer(x, lengths=LENGTHS)
    r_out, r_final = eval_reference(layer, x, LENGTHS)
    close(out, r_out, TOL64, "eval output")


def entry_backward(name):
    """The NumPy layer's backward (training mode) against ref.backward (BPTT) with the same masks."""
    layer, x, (out, state), (_, _, cache) = train_step(name)
    g = np.random.default_rng(7)
    d_out = g.standard_normal(out.shape)
    d_final = tuple(g.standard_normal(s.shape) for s in state_tuple(layer.mode, state))
    grads = layer.backward(d_out, *d_final)
    r_dx, r_ds0, r_grads = ref.backward(cache, d_out, d_final)
    close(grads.input, r_dx, TOL64, "dx")
    for a, b in zip(state_tuple(layer.mode, grads.hx), r_ds0):
        close(a, b, TOL64, "d_state0")
    for key, value in r_grads.items():
        close(grads.params[key], value, TOL64, key)


def _relative_error(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-300))


def _within_bf16_bounds(outputs, ref_outputs, grads, ref_grads, what):
    for got, want in zip(outputs, ref_outputs):
        err = _relative_error(got, want)
        assert err <= BF16_TRAIN_BOUND[0], f"{what} output: {err:.3g} > {BF16_TRAIN_BOUND[0]}"
    for key, want in ref_grads.items():
        err = _relative_error(grads[key], want)
        assert err <= BF16_TRAIN_BOUND[1], f"{what} gradient {key}: {err:.3g} > {BF16_TRAIN_BOUND[1]}"


def entry_bf16_train(name):
    """engine.train_forward / backward with precision="bfloat16" (float32 parameters, the layer's training
    masks): within the bf16 training bounds of the float64 reference, or refused naming the option."""
    layer, x, _, (r_out, r_final, cache) = train_step(name)
    replay = make_layer(name)
    replay.rng = copy.deepcopy(make_layer(name).rng)
    drop = replay._dropout_masks(T, B)
    params32 = {k: np.asarray(v, np.float32) for k, v in layer.params.items()}
    drop32 = None if drop is None else [np.asarray(m, np.float32) for m in drop]
    d_out = np.random.default_rng(7).standard_normal(r_out.shape).astype(np.float32)
    try:
        out, final, ws = engine.train_forward(layer.config, params32, x.astype(np.float32), None, LENGTHS, None,
                                              drop32, "bfloat16")
    except ValueError as e:
        raise Refused(str(e)) from e
    _, _, grads = engine.backward(layer.config, params32, x.astype(np.float32), d_out, None, None, LENGTHS, None, ws,
                                  drop32, "bfloat16")
    _, _, r_grads = ref.backward(cache, d_out.astype(np.float64), None)
    _within_bf16_bounds((out, *final), (r_out, *r_final), grads, r_grads, "bf16 training")


def entry_torch_autocast_train(name):
    """The float32 lstmkit.torch module trained under torch.autocast("cpu", bfloat16): bf16 products where the
    cells have them (within the bf16 training bounds of the reference), elsewhere float32's own bits."""
    module, torch = _torch_module(name)
    module = module.float().train()
    batch = 4  # bf16 products from lstmkit.torch.ops.BF16_MIN_BATCH rows (the matrix's B = 3 stays float32)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((T, batch, I)).astype(np.float32))
    lengths = torch.from_numpy(np.array([5, 2, 4, 3]))
    runs = []
    for autocast in (True, False):
        module.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        torch.manual_seed(5)
        drop = module._dropout_masks(T, batch, xg)
        vmasks = module._variant_masks(T, batch, xg)
        torch.manual_seed(5)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, state = module(xg, lengths=lengths)
        final = state_tuple(module.mode, state)
        g = torch.Generator().manual_seed(9)
        torch.autograd.backward([out, *final], [torch.randn(o.shape, generator=g) for o in (out, *final)])
        runs.append(([out.detach(), *(f.detach() for f in final)],
                     {k: p.grad.clone() for k, p in module.named_parameters()}, drop, vmasks))
    (outs, grads, drop, vmasks), (outs32, grads32, _, _) = runs
    config = module.config
    if not config.is_plain or config.proj_size:  # no bf16 products: float32 under autocast, the same bits
        for a, b in zip([*outs, *grads.values()], [*outs32, *grads32.values()]):
            close(a.numpy(), b.numpy(), dict(rtol=0, atol=0), "autocast without bf16 products")
        return
    drop_np, vm = _torch_masks_as_numpy(drop, vmasks)
    params = {k: v.detach().double().numpy() for k, v in module.state_dict().items()}
    drop_np = None if drop_np is None else [m.astype(np.float64) for m in drop_np]
    r_out, r_final, cache = ref.forward(config, params, x.double().numpy(), None, lengths.numpy(), drop_np, vm)
    g = torch.Generator().manual_seed(9)
    d = [torch.randn(o.shape, generator=g).double().numpy() for o in outs]
    _, _, r_grads = ref.backward(cache, d[0], tuple(d[1:]))
    _within_bf16_bounds([o.numpy() for o in outs], (r_out, *r_final), {k: v.numpy() for k, v in grads.items()},
                        r_grads, "autocast training")


def entry_stream(name):
    """layer.stream() stepped T times against the eval-mode layer over the whole sequence."""
    layer = make_layer(name).eval()
    x = inputs()
    try:
        s = layer.stream(batch=B)
    except ValueError as e:
        raise Refused(str(e)) from e
    steps = np.stack([s.step(np.ascontiguousarray(x[t])) for t in range(T)])
    out, state = layer(x)
    close(steps, out, TOL64, "stream vs layer")
    for a, b in zip(s.state, state_tuple(layer.mode, state)):
        close(a, b, TOL64, "stream state")


def entry_torch_stream(name):
    """lstmkit.torch module's stream() stepped T times against the module over the whole sequence."""
    module, torch = _torch_module(name)
    module.eval()
    x = torch.from_numpy(inputs())
    try:
        s = module.stream(batch=B)
    except ValueError as e:
        raise Refused(str(e)) from e
    steps = torch.stack([s.step(x[t]) for t in range(T)])
    with torch.no_grad():
        out, _ = module(x)
    close(steps.numpy(), out.numpy(), TOL64, "torch stream vs module")


def _quantize(name, dtype):
    layer = make_layer(name, dtype="float32").eval()
    x = inputs("float32")
    try:
        q = lstmkit.quantize(layer, dtype)
    except ValueError as e:
        raise Refused(str(e)) from e
    out, state = layer(x, lengths=LENGTHS)
    q_out, q_state = q(x, lengths=LENGTHS)
    for a, b in zip((q_out, *state_tuple(layer.mode, q_state)), (out, *state_tuple(layer.mode, state))):
        err = np.abs(a - b).max() / np.abs(b).max()
        assert err <= QUANT_BOUND[dtype], f"quantize {dtype}: max error {err:.3g} > {QUANT_BOUND[dtype]}"
    if not layer.config.bidirectional:
        s = q.stream(batch=B)
        steps = np.stack([s.step(np.ascontiguousarray(x[t])) for t in range(T)])
        q_full, _ = q(x)
        close(steps, q_full, TOL32, "quantized stream vs quantized sequence")


def entry_quantize_bf16(name):
    _quantize(name, "bfloat16")


def entry_quantize_int8(name):
    _quantize(name, "int8")


def _torch_module(name):
    import torch

    return lstmkit.io.to_torch(make_layer(name), impl="lstmkit"), torch


def _torch_masks_as_numpy(drop, vmasks):
    drop_np = [m.numpy() for m in drop] or None
    vm = variants.VariantMasks(*[[m.numpy() for m in ms] or None for ms in vmasks]) if any(vmasks) else None
    return drop_np, vm


def entry_torch_train(name, checkpointed=False):
    """lstmkit.torch module in training mode: outputs and gradients against the reference, same masks;
    ``checkpointed``: the call through torch.utils.checkpoint(use_reentrant=False), which runs the forward
    again in the backward with the RNG state restored (so the same masks)."""
    module, torch = _torch_module(name)
    module.train()
    x = torch.from_numpy(inputs()).requires_grad_(True)
    lengths = torch.from_numpy(LENGTHS)
    torch.manual_seed(5)
    drop = module._dropout_masks(T, B, x)
    vmasks = module._variant_masks(T, B, x)
    torch.manual_seed(5)
    if checkpointed:
        from torch.utils.checkpoint import checkpoint

        out, state = checkpoint(lambda t: module(t, lengths=lengths), x, use_reentrant=False)
    else:
        out, state = module(x, lengths=lengths)
    final = state_tuple(module.mode, state)
    drop_np, vm = _torch_masks_as_numpy(drop, vmasks)
    params = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    r_out, r_final, cache = ref.forward(module.config, params, x.detach().numpy(), None, LENGTHS, drop_np, vm)
    close(out.detach().numpy(), r_out, TOL64, "torch train output")
    for a, b in zip(final, r_final):
        close(a.detach().numpy(), b, TOL64, "torch train final state")
    g_out = torch.randn_like(out)
    g_final = [torch.randn_like(f) for f in final]
    torch.autograd.backward([out, *final], [g_out, *g_final])
    r_dx, _, r_grads = ref.backward(cache, g_out.numpy(), tuple(g.numpy() for g in g_final))
    close(x.grad.numpy(), r_dx, TOL64, "torch dx")
    for key, p in module.named_parameters():
        close(p.grad.numpy(), r_grads[key], TOL64, key)


def entry_torch_checkpoint(name):
    entry_torch_train(name, checkpointed=True)


def entry_torch_eval(name):
    module, torch = _torch_module(name)
    module.eval()
    x = inputs()
    with torch.no_grad():
        out, state = module(torch.from_numpy(x), lengths=torch.from_numpy(LENGTHS))
    layer = make_layer(name)
    r_out, r_final = eval_reference(layer, x, LENGTHS)
    close(out.numpy(), r_out, TOL64, "torch eval output")
    for a, b in zip(state_tuple(module.mode, state), r_final):
        close(a.numpy(), b, TOL64, "torch eval state")


def entry_torch_compile(name):
    module, torch = _torch_module(name)
    module.eval()
    x = inputs()
    compiled = torch.compile(module, fullgraph=True, dynamic=False)
    with torch.no_grad():
        out, _ = compiled(torch.from_numpy(x))
    r_out, _ = eval_reference(make_layer(name), x)
    close(out.numpy(), r_out, TOL64, "compiled output")


def entry_torch_export(name):
    module, torch = _torch_module(name)
    module.eval()
    x = inputs()
    exported = torch.export.export(module, (torch.from_numpy(x),))
    with torch.no_grad():
        out, _ = exported.module()(torch.from_numpy(x))
    r_out, _ = eval_reference(make_layer(name), x)
    close(out.numpy(), r_out, TOL64, "exported output")


def entry_onnx(name):
    from lstmkit.io.onnx import session

    layer = make_layer(name, dtype="float32").eval()
    x = inputs("float32")
    try:
        proto = lstmkit.io.to_onnx(layer, lengths=True)
    except ValueError as e:
        raise Refused(str(e)) from e
    got = session(proto).run(None, {"input": x, "lengths": LENGTHS})
    out, state = eval_reference(layer, x.astype(np.float64), LENGTHS)
    for g, e in zip(got, (out, *state)):
        close(g, e, TOL32, "onnxruntime vs reference")


def entry_onnx_import(name):
    from lstmkit.io.onnx import from_onnx

    layer = make_layer(name, dtype="float32").eval()
    x = inputs("float32")
    try:
        proto = lstmkit.io.to_onnx(layer)
    except ValueError as e:
        raise Refused(str(e)) from e
    out, _ = eval_reference(layer, x.astype(np.float64))
    back = from_onnx(proto).eval()
    assert back.config == layer.config, (back.config, layer.config)
    close(back(x)[0], out, TOL32, "from_onnx(to_onnx) vs reference")
    foreign = copy.deepcopy(proto)
    del foreign.metadata_props[:]
    if any(n.op_type in ("LSTM", "GRU") for n in foreign.graph.node):
        close(from_onnx(foreign).eval()(x)[0], out, TOL32, "from_onnx without lstmkit's metadata vs reference")
    else:
        with pytest.raises(ValueError, match="no LSTM or GRU node"):
            from_onnx(foreign)


def entry_torch_onnx(name):
    import io
    import logging

    import onnx
    import torch

    from lstmkit.io.onnx import session

    layer = make_layer(name, dtype="float32").eval()
    module = lstmkit.io.to_torch(layer, impl="lstmkit").eval()
    x = inputs("float32")
    f = io.BytesIO()
    logging.disable(logging.WARNING)
    try:
        torch.onnx.export(module, (torch.from_numpy(x),), f, dynamo=False)
    except ValueError as e:
        raise Refused(str(e)) from e
    finally:
        logging.disable(logging.NOTSET)
    sess = session(onnx.load_from_string(f.getvalue()))
    out, _ = eval_reference(layer, x.astype(np.float64))
    close(sess.run(None, {sess.get_inputs()[0].name: x})[0], out, TOL32, "torch.onnx.export vs reference")


def entry_keras(name):
    from lstmkit.io.keras import from_keras, to_keras

    layer = make_layer(name, dtype="float32").eval()
    x = inputs("float32")
    try:
        model = to_keras(layer)
    except ValueError as e:
        raise Refused(str(e)) from e
    out, _ = eval_reference(layer, x.astype(np.float64))
    got = model.predict(np.ascontiguousarray(x.transpose(1, 0, 2)), verbose=0)  # Keras is batch-first
    close(np.asarray(got).transpose(1, 0, 2), out, TOL32, "Keras vs reference")
    close(from_keras(model, batch_first=False).eval()(x)[0], out, TOL32, "from_keras(to_keras) vs reference")


def entry_save_load(name):
    layer = make_layer(name).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.safetensors")
        lstmkit.io.save(layer, path)
        back = lstmkit.io.load(path).eval()
    assert back.config == layer.config, (back.config, layer.config)
    for key, value in layer.params.items():
        np.testing.assert_array_equal(back.params[key], value, err_msg=key)
    x = inputs()
    np.testing.assert_array_equal(back(x)[0], layer(x)[0])


def entry_task_checkpoint(name):
    """A task model holding the lstmkit.torch module, saved as lstmkit.tasks saves it (``checkpoint.save``) and read
    back by ``lstmkit.load`` (what ``lstmkit report`` / ``explain`` open): the same config, the reference's eval
    output (the options without tensors must survive too, recorded in the checkpoint's ``rnn_configs``)."""
    from lstmkit.tasks import checkpoint

    module, torch = _torch_module(name)
    model = torch.nn.Module()
    model.rnn = module
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "task.safetensors")
        checkpoint.save(path, task="forecast", config={}, model=model)
        back = lstmkit.io.load(path).eval()
    assert back.config == module.config, (back.config, module.config)
    x = inputs()
    out, _ = back(x, lengths=LENGTHS)
    close(out, eval_reference(make_layer(name), x, LENGTHS)[0], TOL64, "task checkpoint vs reference")


def entry_trace(name):
    """trace(): states against the reference run one step at a time, gates tied to them by the cell's identities."""
    from lstmkit.introspect.trace import trace

    layer = make_layer(name).eval()
    cfg = layer.config
    x = inputs()
    try:
        tr = trace(layer, x)
    except ValueError as e:
        raise Refused(str(e)) from e
    out, _ = eval_reference(layer, x)
    close(tr.output, out, TOL64, "trace output")
    # the reference, one step at a time (lengths cut the sequence): the states after every step
    D = cfg.num_directions
    z_c, z_h = cfg.zoneout
    for layer_index in range(cfg.num_layers):
        for d in range(D):
            dt = tr.layers[layer_index][d]
            for t in range(T):
                if d == 0:  # the forward direction after step t = a (t + 1)-step run's final state
                    _, final = eval_reference(layer, x[: t + 1])
                    close(dt.h[t], final[0][layer_index * D], TOL64, f"trace h layer {layer_index} step {t}")
                    if cfg.mode == "LSTM":
                        close(dt.c[t], final[1][layer_index * D], TOL64, f"trace c layer {layer_index} step {t}")
                prev_h = dt.h0 if (t == 0 if d == 0 else t == T - 1) else dt.h[t - 1 if d == 0 else t + 1]
                if cfg.mode == "LSTM":
                    prev_c = dt.c0 if (t == 0 if d == 0 else t == T - 1) else dt.c[t - 1 if d == 0 else t + 1]
                    gates = dt.gates
                    c_tilde = gates["f"][t] * prev_c + gates["i"][t] * gates["g"][t]
                    close(dt.c[t], z_c * prev_c + (1 - z_c) * c_tilde, TOL64, "c = zoneout(f ⊙ c + i ⊙ g)")
                    if cfg.input_forget:
                        close(gates["f"][t], 1 - gates["i"][t], TOL64, "f = 1 − i")
                else:
                    gates = dt.gates
                    h_tilde = (1 - gates["z"][t]) * gates["n"][t] + gates["z"][t] * prev_h
                    close(dt.h[t], z_h * prev_h + (1 - z_h) * h_tilde, TOL64, "h = zoneout((1 − z) ⊙ n + z ⊙ h)")


def entry_to_torch_nn(name):
    """torch.nn out of the layer: refuses what torch.nn lacks, else computes the same."""
    import torch

    layer = make_layer(name).eval()
    try:
        module = lstmkit.io.to_torch(layer, impl="nn")
    except ValueError as e:
        raise Refused(str(e)) from e
    x = inputs()
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x))
    close(out.numpy(), layer(x)[0], TOL64, "torch.nn vs layer")


def entry_from_torch(name):
    """lstmkit.torch module -> lstmkit numpy layer: the same config and the same eval forward."""
    module, torch = _torch_module(name)
    module.eval()
    back = lstmkit.io.from_torch(module).eval()
    assert back.config == module.config, (back.config, module.config)
    x = inputs()
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x))
    close(back(x)[0], out.numpy(), TOL64, "from_torch vs module")


ENTRIES = {
    "forward": entry_forward, "backward": entry_backward, "stream": entry_stream, "torch_stream": entry_torch_stream,
    "quantize_bf16": entry_quantize_bf16, "quantize_int8": entry_quantize_int8,
    "torch_train": entry_torch_train, "torch_eval": entry_torch_eval, "torch_compile": entry_torch_compile,
    "torch_export": entry_torch_export, "onnx": entry_onnx, "onnx_import": entry_onnx_import,
    "torch_onnx": entry_torch_onnx, "keras": entry_keras,
    "save_load": entry_save_load, "task_checkpoint": entry_task_checkpoint, "trace": entry_trace,
    "to_torch_nn": entry_to_torch_nn, "from_torch": entry_from_torch, "bf16_train": entry_bf16_train,
    "torch_autocast_train": entry_torch_autocast_train, "torch_checkpoint": entry_torch_checkpoint,
}
NEEDS = {"torch_stream": "torch", "torch_train": "torch", "task_checkpoint": "torch", "torch_checkpoint": "torch",
         "torch_autocast_train": "torch", "torch_eval": "torch",
         "torch_compile": "torch", "torch_export": "torch", "to_torch_nn": "torch", "from_torch": "torch",
         "onnx": "onnxruntime", "onnx_import": "onnx", "keras": "keras", "torch_onnx": "onnxruntime"}
NATIVE = ("stream", "torch_stream", "quantize_bf16", "quantize_int8", "bf16_train", "torch_autocast_train")
SLOW = ("torch_compile", "torch_export")
PATH_WORDS = {"stream": ("stream",), "torch_stream": ("stream",), "quantize_bf16": ("quantiz",),
              "quantize_int8": ("quantiz",), "bf16_train": ("bfloat16",), "trace": ("trace",),
              "to_torch_nn": ("torch.nn",), "onnx": ("onnx",), "onnx_import": ("onnx",), "keras": ("keras",),
              "torch_onnx": ("onnx",)}


def cells():
    """(option set, entry) pairs of the matrix (slow entries on SLOW_SUBSET only)."""
    return [(o, e) for e in ENTRIES for o in OPTION_SETS if e not in SLOW or o in SLOW_SUBSET]


def run_cell(option_set, entry) -> tuple[str, str]:
    """-> (outcome, detail): outcome "agree", "refuse" (error naming an option and the path) or "wrong"."""
    try:
        ENTRIES[entry](option_set)
    except Refused as e:
        message = str(e).lower()
        names_option = any(w.lower() in message for w in option_words(option_set))
        names_path = any(w.lower() in message for w in PATH_WORDS.get(entry, (entry,)))
        if names_option and names_path:
            return "refuse", str(e)
        return "wrong", f"refused without naming the option and the path: {e}"
    except AssertionError as e:
        return "wrong", f"silent mismatch: {str(e).splitlines()[0] if str(e) else 'assertion'}"
    except Exception as e:  # noqa: BLE001 - any other error is an unnamed failure: wrong
        return "wrong", f"{type(e).__name__}: {e}"
    return "agree", ""


def _skip_reason(entry):
    need = NEEDS.get(entry)
    if need == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")  # as lstmkit.io.keras runs it: lstmkit[keras] brings torch
    if need:
        try:
            __import__(need)
        except ImportError:
            return f"{need} is not installed"
    if entry in NATIVE and not engine.available():
        return "lstmkit._engine is not built"
    return None


# ----------------------------------------------------------------------------------------------- the test

RESULTS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _matrix_summary():
    yield
    if RESULTS:
        counts = Counter(outcome for outcome, _ in RESULTS.values())
        line = f"composition matrix: {dict(counts)} of {len(RESULTS)} cells"
        print("\n" + line)
        out = os.environ.get("LSTMKIT_COMPOSITION_MATRIX")
        if out:
            with open(out, "w") as f:
                f.write(format_matrix(RESULTS) + "\n" + line + "\n")


@pytest.mark.parametrize("option_set,entry", cells(), ids=[f"{e}-{o}" for o, e in cells()])
def test_cell_agrees_or_refuses_by_name(option_set, entry):
    reason = _skip_reason(entry)
    if reason:
        pytest.skip(reason)
    outcome, detail = run_cell(option_set, entry)
    RESULTS[(option_set, entry)] = (outcome, detail)
    assert outcome != "wrong", f"{entry} × {option_set}: {detail}"


def test_plain_cells_are_never_refused():
    """The plain LSTM and GRU run on every entry point (a refusal there would hide a broken path)."""
    for option_set in ("LSTM-plain", "GRU-plain"):
        for entry in ("forward", "stream", "quantize_int8", "trace", "to_torch_nn", "onnx", "onnx_import", "keras",
                      "torch_onnx"):
            if _skip_reason(entry) is None:
                assert run_cell(option_set, entry)[0] == "agree", (option_set, entry)


def format_matrix(results) -> str:
    sets = list(OPTION_SETS)
    entries = list(ENTRIES)
    mark = {"agree": "ok", "refuse": "R", "wrong": "WRONG"}
    lines = ["| option set | " + " | ".join(entries) + " |", "|---" * (len(entries) + 1) + "|"]
    for o in sets:
        row = [mark[results[(o, e)][0]] if (o, e) in results else "–" for e in entries]
        lines.append(f"| {o} | " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    results = {}
    for option_set, entry in cells():
        if _skip_reason(entry) is None:
            results[(option_set, entry)] = run_cell(option_set, entry)
    print(format_matrix(results))
    for key, (outcome, detail) in results.items():
        if outcome != "agree":
            print(f"{outcome:7s} {key[1]} × {key[0]}: {detail[:200]}")
    print("counts:", dict(Counter(outcome for outcome, _ in results.values())), "of", len(results))
    sys.exit(1 if any(outcome == "wrong" for outcome, _ in results.values()) else 0)
