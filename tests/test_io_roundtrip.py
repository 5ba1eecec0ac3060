"""The whole bridge: torch → lstmkit → Keras → ONNX → lstmkit → torch over a sweep of configurations.

Each leg runs both sides on the same random float32 input and compares outputs (and final states where the
formats expose them) with a normwise relative error, max|a − b| / max(|b|), which must be ≤ 1e-5. Keras has
no projected LSTM, so proj_size configurations go torch → lstmkit → safetensors → ONNX → lstmkit → torch.
The worst error per leg is printed as a table at the end of the module (see also benchmarks/interop_errors.py).
"""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import lstmkit  # noqa: E402
from lstmkit.io import onnx as lkonnx  # noqa: E402

TOLERANCE = 1e-5
LEGS = ["torch -> lstmkit", "lstmkit -> Keras", "Keras -> ONNX", "lstmkit -> safetensors -> lstmkit",
        "safetensors -> ONNX", "ONNX -> lstmkit", "lstmkit -> torch", "whole chain (torch in vs torch out)"]
WORST = {leg: 0.0 for leg in LEGS}

SWEEP = [(mode, layers, bi, proj, bf)
         for mode in ("LSTM", "GRU") for layers in (1, 2) for bi in (False, True) for proj in (0, 3)
         for bf in (False, True)
         if not (mode == "GRU" and proj) and (layers, bi, bf) in {(1, False, False), (2, True, True), (1, True, False),
                                                                  (2, False, True)}]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def record(leg, *pairs):
    err = max(rel_err(a, b) for a, b in pairs)
    WORST[leg] = max(WORST[leg], err)
    assert err <= TOLERANCE, f"{leg}: relative error {err:.2e} > {TOLERANCE}"


def torch_run(module, x):
    with torch.no_grad():
        out, state = module(torch.from_numpy(x))
    return [out.numpy()] + [s.numpy() for s in (state if isinstance(state, tuple) else (state,))]


def lstmkit_run(layer, x):
    out, state = layer(x)
    return [out] + list(state if isinstance(state, tuple) else (state,))


def to_batch_first(a, batch_first):
    return a if batch_first else a.transpose(1, 0, 2)


@pytest.fixture(scope="module", autouse=True)
def error_table(request):
    yield
    lines = ["", "leg | worst relative error", "--- | ---"]
    lines += [f"{leg} | {WORST[leg]:.2e}" for leg in LEGS]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown even without -s
        print("\n".join(lines))


@pytest.mark.parametrize("mode,layers,bi,proj,bf", SWEEP,
                         ids=[f"{m}-L{n}{'-bi' if b else ''}{f'-proj{p}' if p else ''}{'-bf' if f else ''}"
                              for m, n, b, p, f in SWEEP])
def test_round_trip_chain(mode, layers, bi, proj, bf, tmp_path):
    torch.manual_seed(len(tmp_path.name))
    extra = {"proj_size": proj} if proj else {}
    source = getattr(torch.nn, mode)(5, 6, layers, True, bf, 0.0, bi, **extra).eval()
    with torch.no_grad():  # non-zero biases everywhere, so Keras' bias merge matters
        for p in source.parameters():
            p.add_(0.05)
    rng = np.random.default_rng(layers * 10 + bi)
    x = rng.standard_normal((3, 7, 5) if bf else (7, 3, 5)).astype(np.float32)
    x_bf = to_batch_first(x, bf)

    layer = lstmkit.from_torch(source)  # leg: torch -> lstmkit
    ours = lstmkit_run(layer, x)
    record("torch -> lstmkit", *zip(ours, torch_run(source, x)))

    if not proj:
        keras_model = lstmkit.to_keras(layer)  # leg: lstmkit -> Keras (Keras is batch-first)
        keras_out = np.asarray(keras_model(x_bf).detach().cpu())
        record("lstmkit -> Keras", (keras_out, to_batch_first(ours[0], bf)))
        onnx_model = lstmkit.to_onnx(lstmkit.from_keras(keras_model))  # leg: Keras -> ONNX (batch-first)
        onnx_out = lkonnx.session(onnx_model).run(None, {"input": x_bf})
        record("Keras -> ONNX", (onnx_out[0], keras_out))
        onnx_x = x_bf
    else:
        path = lstmkit.save(layer, tmp_path / "m.safetensors")  # leg: lstmkit -> safetensors -> lstmkit
        stored = lstmkit.load(path)
        record("lstmkit -> safetensors -> lstmkit", *zip(lstmkit_run(stored, x), ours))
        onnx_model = lstmkit.to_onnx(stored)  # leg: safetensors -> ONNX
        onnx_out = lkonnx.session(onnx_model).run(None, {"input": x})
        record("safetensors -> ONNX", *zip(onnx_out, ours))
        onnx_x = x

    back = lstmkit.from_onnx(onnx_model)  # leg: ONNX -> lstmkit
    record("ONNX -> lstmkit", *zip(lstmkit_run(back, onnx_x), onnx_out))

    back = lstmkit.io.model.build(back.config, back.state_dict(), batch_first=bf)
    target = lstmkit.to_torch(back)  # leg: lstmkit -> torch
    final = torch_run(target, x)
    record("lstmkit -> torch", *zip(final, lstmkit_run(back, x)))
    record("whole chain (torch in vs torch out)", *zip(final, torch_run(source, x)))
    assert type(target) is type(source)
    for name, value in source.state_dict().items():  # weights: equal, up to Keras' single LSTM bias
        if mode == "LSTM" and not proj and name.startswith("bias"):
            continue
        np.testing.assert_array_equal(target.state_dict()[name].numpy(), value.numpy(), err_msg=name)
