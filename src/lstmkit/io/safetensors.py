"""safetensors files with the architecture in their metadata: ``save(model, path)`` / ``load(path)``.

Written and read with NumPy alone (the format is an 8-byte little-endian header length, a JSON header, then
raw little-endian tensors), so a saved model deploys without torch or the safetensors package; any
safetensors reader reads the files. Tensors keep torch's state_dict names and gate order, so
``torch.nn.LSTM(...).load_state_dict(safetensors.torch.load_file(path))`` works too. The metadata
(string → string, as the format requires) holds:

    format      "lstmkit"
    kind        "LSTM", "GRU", "LSTMCell" or "GRUCell"
    config      RNNConfig as JSON (mode, input_size, hidden_size, num_layers, bias, batch_first, ...)
    convention  JSON: {"names": "torch", "gate_order": [...]} (the gate order of the stored rows)
    content_sha256  SHA-256 of the tensors (by name: dtype, shape, bytes), checked by ``read`` so a damaged
                file is refused; independent of the byte layout, so another writer may reorder the tensors
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

from ..params import RNNConfig
from .files import atomic_write
from .gates import ORDERS
from .model import build, unpack

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"), "U8": np.dtype("u1"),
          "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
          "BOOL": np.dtype("?")}
NAMES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}
MAX_HEADER = 100_000_000  # the format's own limit


def save(model, path, *, overwrite: bool = False) -> Path:
    """Write ``model`` (an lstmkit layer/cell, or anything ``lstmkit.io.as_layer`` converts) to ``path``.

    Refuses an existing file unless ``overwrite``; writes atomically (temp file, fsync, os.replace).
    """
    from .convert import as_layer

    data = to_bytes(as_layer(model))
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite)


def to_bytes(model) -> bytes:
    """The safetensors bytes of an lstmkit layer or cell (tensors named as its own state_dict)."""
    config, _, cell = unpack(model)
    tensors = model.state_dict()
    kind = config.mode + ("Cell" if cell else "")
    metadata = {
        "format": "lstmkit",
        "kind": kind,
        "config": json.dumps(config.to_dict()),
        "convention": json.dumps({"names": "torch", "gate_order": list(ORDERS["torch"][config.mode])}),
    }
    return encode(tensors, metadata)


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """safetensors bytes of float32/float64 ``tensors`` with ``metadata`` plus its content_sha256."""
    header: dict = {"__metadata__": metadata}
    offset, blobs = 0, []
    for name, value in tensors.items():
        value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        blob = value.tobytes()
        header[name] = {"dtype": NAMES[np.dtype(value.dtype.name)], "shape": list(value.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    body = b"".join(blobs)
    metadata["content_sha256"] = content_hash(tensors)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + body


def load(path, *, batch_first: bool | None = None):
    """Read an lstmkit safetensors file back into an lstmkit layer or cell (NumPy only).

    A checkpoint written by ``lstmkit.tasks`` (metadata key "task") gives its recurrent layer.

    Raises ValueError naming the file for a truncated or malformed file, missing lstmkit metadata, or
    tensors whose names or shapes disagree with the metadata's config.
    """
    path = Path(path)
    metadata, tensors = read(path)
    if "task" in metadata:  # a checkpoint of lstmkit.tasks: its recurrent layer, found by torch's names
        from .torch import from_state_dict

        weights = {k: v for k, v in tensors.items() if k.startswith("model.")}
        try:
            return from_state_dict(weights, batch_first=bool(batch_first))
        except ValueError as e:
            raise ValueError(f"{path}: a {metadata['task']!r} checkpoint whose recurrent layer cannot be read: {e}") \
                from e
    if metadata.get("format") != "lstmkit" or "config" not in metadata or "kind" not in metadata:
        raise ValueError(f"{path}: no lstmkit metadata (format/kind/config) in the safetensors header; it holds "
                         f"tensors {sorted(tensors)[:6]}... — convert a plain state_dict with "
                         "lstmkit.io.torch.from_state_dict (or `lstmkit convert --format`) instead")
    try:
        config = RNNConfig(**json.loads(metadata["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: metadata 'config' is not a valid RNNConfig: {e}") from e
    convention = json.loads(metadata.get("convention", '{"names": "torch"}'))
    if convention.get("names") != "torch" or tuple(convention.get("gate_order", ORDERS["torch"][config.mode])) \
            != ORDERS["torch"][config.mode]:
        raise ValueError(f"{path}: unsupported convention {convention}; expected torch names and gate order")
    kind = metadata["kind"]
    if kind not in (config.mode, config.mode + "Cell"):
        raise ValueError(f"{path}: metadata kind {kind!r} disagrees with config mode {config.mode!r}")
    cell = kind.endswith("Cell")
    params = {name + "_l0": value for name, value in tensors.items()} if cell else tensors
    changes = {} if batch_first is None else {"batch_first": batch_first}
    try:
        return build(config, params, cell, **changes)
    except ValueError as e:
        raise ValueError(f"{path}: tensors disagree with the metadata's config: {e}") from e


def read(path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, tensors) of any safetensors file; ValueError for anything malformed or truncated."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated safetensors file ({len(data)} bytes, no header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER:
        raise ValueError(f"{path}: not a safetensors file (header length {n} is implausible)")
    if 8 + n > len(data):
        raise ValueError(f"{path}: truncated safetensors file (header says {n} bytes, file has {len(data) - 8})")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a safetensors file (header is not JSON: {e})") from e
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    body = memoryview(data)[8 + n:]
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1].get("data_offsets", [0])[0]):
        try:
            dtype, shape, (begin, stop) = DTYPES[info["dtype"]], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: tensor {name!r}: unsupported or malformed entry {info}") from e
        if begin != end or stop - begin != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r}: data_offsets {[begin, stop]} disagree with shape {shape}")
        if stop > len(body):
            raise ValueError(f"{path}: truncated safetensors file (tensor {name!r} needs bytes up to {stop}, "
                             f"the file has {len(body)})")
        tensors[name] = np.frombuffer(body[begin:stop], dtype).reshape(shape).astype(dtype.newbyteorder("="))
        end = stop
    if end != len(body):
        raise ValueError(f"{path}: {len(body) - end} trailing bytes after the last tensor")
    expected = metadata.get("content_sha256")
    if expected is not None and content_hash(tensors) != expected:
        raise ValueError(f"{path}: content hash mismatch: the tensors are damaged (content_sha256 "
                         f"{expected[:12]}... in the metadata)")
    return metadata, tensors


def content_hash(tensors: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 over the tensors in name order: each name, dtype, shape and little-endian bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name], dtype=np.dtype(tensors[name].dtype.name).newbyteorder("<"))
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
