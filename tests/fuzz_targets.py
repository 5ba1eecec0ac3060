"""Fuzz targets: each takes arbitrary bytes and must either work or raise a clear Python error.

A crash (segfault, abort) or any other exception is a finding. ``scripts/fuzz.py`` drives these with
atheris for a time budget; ``tests/test_fuzz_targets.py`` runs them on seeded random bytes in CI.
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile

import numpy as np

import lstmkit
from lstmkit import engine
from lstmkit.params import RNNConfig, init_params

CLEAR_ERRORS = (ValueError, TypeError)


class Reader:
    """Reads small integers and choices from fuzz bytes; past the end everything is 0."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def int(self, low: int, high: int) -> int:
        return low + self.byte() % (high - low + 1)

    def choice(self, options):
        return options[self.byte() % len(options)]

    def rest(self) -> bytes:
        return self.data[self.pos:]


FAULTS = ("none", "none", "none", "param_shape", "param_dtype", "missing_param", "x_shape", "x_dtype",
          "state_shape", "lengths_range", "lengths_count", "lengths_float")


def _off_by_one(r: Reader, shape: tuple) -> tuple:
    """The shape with one dimension off by one, or one dimension dropped or added."""
    action = r.int(0, 2)
    if action == 0 and shape:
        k = r.int(0, len(shape) - 1)
        return shape[:k] + (shape[k] + 1,) + shape[k + 1:]
    return shape[:-1] if action == 1 and shape else shape + (1,)


def engine_target(data: bytes) -> None:
    """engine.forward / backward / cell_forward on random configurations, at most one fault each.

    About a quarter of the inputs are valid (random sizes, T and B down to 0, lengths in [0, T], non-
    contiguous or read-only arrays) and run the kernels; the rest carry one fault that must be refused.
    """
    r = Reader(data)
    mode = r.choice(("LSTM", "GRU"))
    hidden = r.int(2, 5)
    config = RNNConfig(mode, r.int(1, 4), hidden, r.int(1, 3), bool(r.byte() % 2), bidirectional=bool(r.byte() % 2),
                       proj_size=r.int(0, hidden - 1) if mode == "LSTM" else 0)
    dtype = r.choice((np.float32, np.float64))
    fault = r.choice(FAULTS)
    T, B = r.int(0, 6), r.int(0, 4)
    rng = np.random.default_rng(r.byte())
    params = {k: v.astype(dtype) for k, v in init_params(config, r.byte()).items()}
    victim = r.choice(sorted(params))
    if fault == "param_shape":
        params[victim] = np.zeros(_off_by_one(r, params[victim].shape), dtype)
    elif fault == "param_dtype":
        params[victim] = params[victim].astype(r.choice((np.float16, np.int32, np.float32, np.float64)))
    elif fault == "missing_param":
        del params[victim]
    x_shape = _off_by_one(r, (T, B, config.input_size)) if fault == "x_shape" else (T, B, config.input_size)
    x = rng.standard_normal(x_shape).astype(np.int64 if fault == "x_dtype" else dtype)
    if r.byte() % 4 == 0 and x.ndim == 3:
        x = np.repeat(x, 2, axis=0)[::2]  # same values, not contiguous
    if r.byte() % 4 == 0:
        x.setflags(write=False)
    state0 = None
    if r.byte() % 2:
        shapes = [s.shape for s in lstmkit.ref.zero_state(config, B, dtype)]
        if fault == "state_shape":
            shapes[0] = _off_by_one(r, shapes[0])
        state0 = tuple(rng.standard_normal(s).astype(dtype) for s in shapes)
    lengths = None
    if r.byte() % 2 or fault.startswith("lengths"):
        count = B + (r.choice((-1, 1)) if fault == "lengths_count" else 0)
        low, high = (-3, T + 3) if fault == "lengths_range" else (0, T)
        lengths = np.array([r.int(low, high) for _ in range(max(count, 0))],
                           np.float64 if fault == "lengths_float" else np.int64)
        if fault == "lengths_float" and lengths.size:
            lengths[0] += 0.5
    try:
        out, _ = engine.forward(config, params, x, state0, lengths)
        engine.backward(config, params, x, np.ones_like(out), None, state0, lengths)
    except CLEAR_ERRORS:
        pass
    w = {k[:-3]: v for k, v in params.items() if k.endswith("_l0")}
    sizes = (config.output_size, config.hidden_size) if mode == "LSTM" else (config.hidden_size,)
    state = tuple(rng.standard_normal((B, n)).astype(dtype) for n in sizes)
    try:
        engine.cell_forward(mode, x[0] if x.ndim == 3 and len(x) else x, state, w)
    except CLEAR_ERRORS:
        pass


def _valid_file(kind: str) -> bytes:
    """Bytes of a small valid model file of ``kind`` (safetensors, onnx), the seed the fuzzer mutates."""
    layer = lstmkit.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0)
    if kind == "safetensors":
        from lstmkit.io.safetensors import to_bytes

        return to_bytes(layer)
    return lstmkit.to_onnx(layer).SerializeToString()


def _mutate(seed: bytes, data: bytes) -> bytes:
    """Fuzz bytes applied to a valid file: overwrite a few bytes, truncate, or use the bytes alone."""
    r = Reader(data)
    how = r.int(0, 3)
    if how == 0:
        return r.rest()
    out = bytearray(seed)
    if how == 1:
        return bytes(out[: r.int(0, 255) * len(out) // 255])
    for _ in range(r.int(1, 8)):
        if out:
            out[(r.byte() * 257 + r.byte()) % len(out)] = r.byte()
    return bytes(out)


def _load_bytes(suffix: str, blob: bytes, load) -> None:
    fd, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        load(path)
    except CLEAR_ERRORS:
        pass
    finally:
        os.unlink(path)


def safetensors_target(data: bytes, _seed=[]) -> None:
    if not _seed:
        _seed.append(_valid_file("safetensors"))
    _load_bytes(".safetensors", _mutate(_seed[0], data), lstmkit.load)


def onnx_target(data: bytes, _seed=[]) -> None:
    if not _seed:
        _seed.append(_valid_file("onnx"))
    _load_bytes(".onnx", _mutate(_seed[0], data), lstmkit.from_onnx)


def keras_target(data: bytes) -> None:
    """A .keras file is a zip of config.json and weights: fuzz the config's bytes inside a real zip."""
    r = Reader(data)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", r.rest())
        z.writestr("metadata.json", b'{"keras_version": "3.0.0"}')
    from lstmkit.io.convert import read

    _load_bytes(".keras", buf.getvalue(), read)


TARGETS = {"engine": engine_target, "safetensors": safetensors_target, "onnx": onnx_target, "keras": keras_target}
