"""Hostile files: tiny inputs that once cost minutes, gigabytes or a traceback (issue 22), built on demand.

Each builder writes one file into ``folder`` and returns its path. They are shared by the bound test
(tests/test_hostile_files.py, which loads each in a memory-capped subprocess) and the fuzz targets'
regression inputs (tests/fuzz_targets.py), so the same bytes are checked both ways.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import lstmkit

ST_HEADER = {"weight_ih_l0": {"dtype": "F32", "shape": [16, 3], "data_offsets": [0, 192]}}


def _small_layer():
    return lstmkit.LSTM(3, 4, seed=0)


def safetensors_bytes(header: dict | list | str, body: bytes = b"\0" * 192) -> bytes:
    """A safetensors file with ``header`` (a JSON value, or JSON text) and ``body``."""
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text)) + text + body


def st_declared_layers(folder: Path, num_layers: int = 10**7) -> Path:
    """A valid one-layer LSTM file whose metadata config says ``num_layers`` (hashes recomputed: a hash is
    not a signature, so the bound must hold for a self-consistent file)."""
    from lstmkit.io.safetensors import encode, to_bytes, read

    path = folder / "layers.safetensors"
    path.write_bytes(to_bytes(_small_layer()))
    meta, tensors = read(path)
    config = json.loads(meta["config"])
    config["num_layers"] = num_layers
    meta = {k: v for k, v in meta.items() if not k.endswith("_sha256")}
    meta["config"] = json.dumps(config)
    path.write_bytes(encode(tensors, meta))
    return path


def pt_declared_layers(folder: Path) -> Path:
    """A 2.6 KB .pt state_dict with keys weight_ih_l0 ... and weight_ih_l99999999."""
    import torch

    state = {k: torch.from_numpy(v) for k, v in _small_layer().state_dict().items()}
    state["weight_ih_l99999999"] = state["weight_ih_l0"].clone()
    path = folder / "layers.pt"
    torch.save(state, path)
    return path


def pt_deflate_bomb(folder: Path, inflated: int = 1 << 30) -> Path:
    """A .pt zip whose one tensor record is ``inflated`` zero bytes, stored deflated (about 1 MB per GB).

    torch.save writes uncompressed records; the pickle is patched to declare the big tensor, then the data
    record is re-written compressed.
    """
    import torch

    small = 70_000  # > 65535: pickled as a 4-byte integer that the big count can replace in place
    buf = io.BytesIO()
    torch.save({"weight_ih_l0": torch.zeros(small)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    path = folder / "bomb.pt"
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(struct.pack("<I", small), struct.pack("<I", inflated // 4))
                out.writestr(info, data)
            elif info.filename.endswith("/data/0"):
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with out.open(entry, "w", force_zip64=True) as f:
                    chunk = b"\0" * (1 << 24)
                    for _ in range(inflated // len(chunk)):
                        f.write(chunk)
            else:
                out.writestr(info, data)
    return path


def onnx_declared_layers(folder: Path, num_layers: int = 10**7) -> Path:
    """An ONNX model without LSTM nodes whose lstmkit metadata says ``num_layers`` (the no-node path)."""
    import onnx

    proto = lstmkit.to_onnx(_small_layer())
    del proto.graph.node[:]
    meta = {p.key: p.value for p in proto.metadata_props}
    config = json.loads(meta["lstmkit.config"])
    config["num_layers"] = num_layers
    meta["lstmkit.config"] = json.dumps(config)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, meta)
    path = folder / "layers.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def onnx_external_bytes(folder: Path) -> tuple[bytes, str]:
    """(model bytes whose W initializer lives in external file "w.bin", that file's name); the caller puts a
    w.bin into the current directory to see whether from_onnx(bytes) reads it."""
    from onnx.external_data_helper import set_external_data

    proto = lstmkit.to_onnx(_small_layer())
    for tensor in proto.graph.initializer:
        if tensor.raw_data:
            blob = tensor.raw_data
            set_external_data(tensor, "w.bin", offset=0, length=len(blob))
            tensor.ClearField("raw_data")
            tensor.data_location = 1  # onnx.TensorProto.EXTERNAL
            (folder / "w.bin").write_bytes(blob)
            break
    return proto.SerializeToString(), "w.bin"


def keras_chunk_bomb(folder: Path, elements: int = 1 << 28, chunk: int = 1 << 10) -> Path:
    """A .keras file whose LSTM kernel dataset declares ``elements`` float32 values in gzip chunks of ``chunk``
    values that were never written (HDF5 reads them as the fill value): a few KB on disk, 4 bytes x elements
    when read, and ~3 KB of h5py's time and memory per chunk (2**20 one-value chunks: 18 s, 3.4 GB)."""
    import h5py

    good = folder / "good.keras"
    lstmkit.io.write(_small_layer(), good, overwrite=True)
    src = zipfile.ZipFile(good)
    h5 = io.BytesIO(src.read("model.weights.h5"))
    with h5py.File(h5, "r+") as f:
        name = "layers/lstm/cell/vars/0"
        del f[name]
        f.create_dataset(name, shape=(elements,), dtype="<f4", chunks=(chunk,), compression="gzip")
    path = folder / "bomb.keras"
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, h5.getvalue() if info.filename == "model.weights.h5" else src.read(info.filename))
    return path


def _keras_with_lstm_layer(folder: Path, name: str, edit) -> Path:
    """A copy of a small good .keras file (as ``name``) with ``edit(layer)`` applied to its LSTM layer's config."""
    good = folder / "good.keras"
    lstmkit.io.write(_small_layer(), good, overwrite=True)
    src = zipfile.ZipFile(good)
    config = json.loads(src.read("config.json"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "LSTM":
            edit(layer)
    path = folder / name
    with zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(info, json.dumps(config) if info.filename == "config.json" else src.read(info.filename))
    return path


def keras_declared_units(folder: Path, units: int = 10**6) -> Path:
    """A .keras file whose config says LSTM units=``units`` (Keras would build 4·units² weights first)."""
    return _keras_with_lstm_layer(folder, "units.keras", lambda layer: layer["config"].update(units=units))


def keras_embedding(folder: Path, input_dim: int = 10**9) -> Path:
    """A .keras file whose LSTM layer became an Embedding of ``input_dim`` rows (Keras would build it first)."""
    def to_embedding(layer):
        layer["class_name"] = "Embedding"
        layer["config"] = {"name": "embedding", "input_dim": input_dim, "output_dim": 64}
    return _keras_with_lstm_layer(folder, "embedding.keras", to_embedding)


# malformed safetensors headers: (name, header JSON text) — each must give one clear ValueError
MALFORMED_HEADERS = {
    "metadata a list": json.dumps({"__metadata__": [1, 2], **ST_HEADER}),
    "data_offsets []": json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [16, 3], "data_offsets": []}}),
    "shape [2**64]": json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [2**64], "data_offsets": [0, 192]}}),
    "200,000-deep nesting": '{"a":' * 200_000 + "1" + "}" * 200_000,
    "negative dims": json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [-16, -3], "data_offsets": [0, 192]}}),
    "integer content_sha256": json.dumps({"__metadata__": {"content_sha256": 5}, **ST_HEADER}),
    "entry a list": json.dumps({"weight_ih_l0": [1, 2]}),
    "offsets of strings": json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [16, 3], "data_offsets": ["0", 9]}}),
}


def malformed_header(folder: Path, name: str) -> Path:
    path = folder / "malformed.safetensors"
    path.write_bytes(safetensors_bytes(MALFORMED_HEADERS[name]))
    return path
