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


# ------------------------------------------------------------------------------- structure-aware mutation
# Byte flips rarely produce a header that parses; these targets parse a valid file, change its structure (a
# JSON value, a declared size) the way a hostile writer would, and write it back consistently.

ODD_VALUES = (-1, 0, 1, 2**31, 2**63, 2**64, 10**7, -(2**63), 1.5, float("nan"), "", "x", None, True, [], {},
              [0], [-1, -1], [2**64], [0, 2**62], {"a": 1}, "[" * 64, 1e300)


def _odd(r: Reader):
    return r.choice(ODD_VALUES)


def _mutate_json(r: Reader, value, depth: int = 0):
    """A copy of a JSON value with one node replaced, deleted or wrapped, chosen by the fuzz bytes."""
    if depth > 6 or not isinstance(value, (dict, list)) or not value or r.int(0, 3) == 0:
        how = r.int(0, 3)
        if how == 0:
            return _odd(r)
        if how == 1:
            return [value]
        if how == 2 and isinstance(value, (dict, list)):
            return type(value)()
        return _odd(r)
    if isinstance(value, dict):
        keys = sorted(value)
        key = r.choice(keys)
        out = dict(value)
        if r.int(0, 5) == 0:
            del out[key]
        else:
            out[key] = _mutate_json(r, value[key], depth + 1)
        return out
    k = r.int(0, len(value) - 1)
    return value[:k] + [_mutate_json(r, value[k], depth + 1)] + value[k + 1:]


def _header_and_body(blob: bytes) -> tuple[dict, bytes]:
    import json
    import struct

    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def safetensors_json_target(data: bytes, _seed=[]) -> None:
    """JSON-aware: mutate the header (entries, shapes, offsets, __metadata__) or a metadata config field of a
    valid file, rehash so the hashes agree, and load it: every declared size must be checked, not trusted."""
    import json

    from hostile import safetensors_bytes
    from lstmkit.io.safetensors import content_hash, metadata_hash

    if not _seed:
        _seed.append(_valid_file("safetensors"))
    r = Reader(data)
    if r.int(0, 7) == 0:  # raw bytes: the regression inputs (tests/hostile.py) come this way
        return _load_bytes(".safetensors", r.rest(), lstmkit.load)
    header, body = _header_and_body(_seed[0])
    meta = header["__metadata__"]
    if r.byte() % 2:  # a field of the config (num_layers, hidden_size ...), JSON inside the JSON
        config = json.loads(meta["config"])
        config = _mutate_json(r, config)
        meta = {**meta, "config": json.dumps(config)}
        header = {**header, "__metadata__": meta}
    else:
        header = _mutate_json(r, header)
    if isinstance(header, dict) and isinstance(header.get("__metadata__"), dict) and r.byte() % 4:
        meta = dict(header["__metadata__"])  # rehashed as a hostile writer would: a hash is not a signature
        meta["content_sha256"] = content_hash(_seed_tensors(_seed[0]))
        if all(isinstance(v, str) for v in meta.values()):
            meta["metadata_sha256"] = metadata_hash(meta)
        header = {**header, "__metadata__": meta}
    _load_bytes(".safetensors", safetensors_bytes(json.dumps(header), body), lstmkit.load)


def _seed_tensors(blob: bytes, _cache={}) -> dict:
    """The tensors of the seed file (read once)."""
    if blob not in _cache:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "seed.safetensors")
            with open(path, "wb") as f:
                f.write(blob)
            _cache[blob] = lstmkit.io.safetensors.read(path)[1]
    return _cache[blob]


def onnx_sizes_target(data: bytes, _seed=[]) -> None:
    """Declared-size mutation of ONNX: an initializer's dims, a node's hidden_size, the lstmkit metadata's
    num_layers/hidden_size, or the graph's nodes removed (the metadata-only path)."""
    import json

    import onnx

    if not _seed:
        _seed.append(_valid_file("onnx"))
    r = Reader(data)
    if r.int(0, 7) == 0:
        return _load_bytes(".onnx", r.rest(), lstmkit.from_onnx)
    proto = onnx.load_from_string(_seed[0])
    for _ in range(r.int(1, 3)):
        what = r.int(0, 3)
        if what == 0 and proto.graph.initializer:
            tensor = proto.graph.initializer[r.int(0, len(proto.graph.initializer) - 1)]
            dims = list(tensor.dims)
            if dims:
                dims[r.int(0, len(dims) - 1)] = r.choice((0, 1, 2**20, 2**31, 2**40))
            del tensor.dims[:]
            tensor.dims.extend(dims)
        elif what == 1:
            for node in proto.graph.node:
                for a in node.attribute:
                    if a.name == "hidden_size":
                        a.i = r.choice((1, 3, 2**20, 2**31))
        elif what == 2:
            props = {p.key: p.value for p in proto.metadata_props}
            if "lstmkit.config" in props:
                config = json.loads(props["lstmkit.config"])
                config[r.choice(("num_layers", "hidden_size", "input_size"))] = r.choice((10**7, 2**31, 0, -1))
                props["lstmkit.config"] = json.dumps(config)
                del proto.metadata_props[:]
                onnx.helper.set_model_props(proto, props)
        else:
            del proto.graph.node[:]
    _load_bytes(".onnx", proto.SerializeToString(), lstmkit.from_onnx)


def keras_file_target(data: bytes, _seed=[]) -> None:
    """A whole .keras file: raw bytes (regression inputs), or a valid file whose HDF5 datasets are re-declared
    with fuzzed shapes and chunking, or whose config's units are fuzzed."""
    import json

    import h5py

    from lstmkit.io.convert import read

    if not _seed:
        with tempfile.TemporaryDirectory() as folder:
            path = lstmkit.io.write(lstmkit.LSTM(3, 4, seed=0), os.path.join(folder, "seed.keras"))
            _seed.append(path.read_bytes())
    r = Reader(data)
    if r.int(0, 3) == 0:
        return _load_bytes(".keras", r.rest(), read)
    src = zipfile.ZipFile(io.BytesIO(_seed[0]))
    h5 = io.BytesIO(src.read("model.weights.h5"))
    config = json.loads(src.read("config.json"))
    if r.byte() % 2:
        with h5py.File(h5, "r+") as f:
            name = "layers/lstm/cell/vars/" + str(r.int(0, 2))
            del f[name]
            n = r.choice((0, 1, 48, 2**20, 2**28, 2**34))
            f.create_dataset(name, shape=(n,), dtype="<f4", chunks=(max(1, min(n, 1 << r.int(0, 12))),),
                             compression="gzip") if n else f.create_dataset(name, shape=(0,), dtype="<f4")
    else:
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "LSTM":
                layer["config"]["units"] = r.choice((1, 4, 5, 10**6, 2**31))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            blob = {"model.weights.h5": h5.getvalue(), "config.json": json.dumps(config).encode()}.get(info.filename)
            out.writestr(info, blob if blob is not None else src.read(info.filename))
    _load_bytes(".keras", buf.getvalue(), read)


def torch_file_target(data: bytes) -> None:
    """A .pt state_dict: raw bytes (regression inputs), or a valid LSTM's with fuzzed layer suffixes and shapes."""
    import torch

    r = Reader(data)
    if r.int(0, 3) == 0:
        return _load_bytes(".pt", r.rest(), lstmkit.io.read)
    state = {k: torch.from_numpy(v) for k, v in lstmkit.LSTM(3, 4, seed=0).state_dict().items()}
    for _ in range(r.int(1, 3)):
        key = r.choice(sorted(state))
        if r.byte() % 2:
            state[key.replace("_l0", f"_l{r.choice((1, 2, 99, 99999999, 10**12))}")] = state.pop(key)
        else:
            state[key] = torch.zeros(tuple(r.choice((0, 1, 3, 16, 17)) for _ in range(r.int(0, 3))))
    buf = io.BytesIO()
    torch.save(state, buf)
    _load_bytes(".pt", buf.getvalue(), lstmkit.io.read)


TARGETS = {"engine": engine_target, "safetensors": safetensors_target, "onnx": onnx_target, "keras": keras_target,
           "safetensors_json": safetensors_json_target, "onnx_sizes": onnx_sizes_target,
           "keras_file": keras_file_target, "torch_file": torch_file_target}
