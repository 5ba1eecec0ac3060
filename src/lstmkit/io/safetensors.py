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
    metadata_sha256 SHA-256 of the other metadata entries (sorted-key JSON): a changed config is refused too
Both hashes are required in a file lstmkit wrote (``verify=False`` skips them, for trusted foreign copies).
A hash finds damage, not malice (anyone can recompute it), so every declared size is still checked against
the file and the tensors present before anything is built.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import numpy as np

from ..params import RNNConfig
from .files import atomic_write, check_regular, short
from .gates import ORDERS
from .model import build, unpack

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"), "U8": np.dtype("u1"),
          "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
          "BOOL": np.dtype("?")}
NAMES = {np.dtype(dtype.name): name for name, dtype in DTYPES.items()}  # native dtype -> the format's name
MAX_HEADER = 100_000_000  # the format's own limit
MAX_RANK = 8  # dimensions of a tensor; lstmkit writes at most 2


def save(model, path, *, overwrite: bool = False) -> Path:
    """Write ``model`` (an lstmkit layer/cell, or anything ``lstmkit.io.as_layer`` converts) to ``path``.

    Refuses an existing file unless ``overwrite``; writes atomically (temp file, fsync, os.replace).
    """
    from .convert import as_layer

    _refuse_other_format(path, "save", "write")
    data = to_bytes(as_layer(model))
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite)


def _refuse_other_format(path, verb: str, io_verb: str) -> None:
    """ValueError for a path whose extension names another format (m.onnx, m.keras, m.pt): ``lstmkit.save``
    would write safetensors bytes under that name, and ``lstmkit.load`` misread the file; lstmkit.io's read and
    write go by the extension."""
    from .convert import FORMATS

    ext = Path(path).suffix.lower()
    kind = {"onnx": "an ONNX model", "keras": "a Keras model", "torch": "a torch state_dict"}.get(FORMATS.get(ext))
    if kind:
        raise ValueError(f"{path}: {ext} names {kind}, and lstmkit.{verb} handles safetensors only; use "
                         f"lstmkit.io.{io_verb}(path), which goes by the extension")


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
        # the mode, as torch.save(module) keeps it: an eval-mode model loads ready for inference (dropout off)
        "training": json.dumps(bool(getattr(model, "training", True))),
    }
    return encode(tensors, metadata)


def encode(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """safetensors bytes of ``tensors`` (dtypes of DTYPES) with ``metadata`` plus its two hashes."""
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
    stamp_hashes(metadata, tensors)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + body


def load(path, *, batch_first: bool | None = None, verify: bool = True):
    """Read an lstmkit safetensors file back into an lstmkit layer or cell (NumPy only), in the mode it was saved
    in, as ``torch.load`` gives a saved module back (training for files written before lstmkit recorded it).

    A checkpoint written by ``lstmkit.tasks`` (metadata key "task") gives its recurrent layer.
    verify: check the content and metadata hashes, and refuse an lstmkit file that lacks them; pass False
    only for a file you trust that another tool rewrote.

    Raises ValueError naming the file for a truncated or malformed file, missing lstmkit metadata, a hash
    that does not match, or tensors whose names or shapes disagree with the metadata's config.
    """
    path = Path(path)
    _refuse_other_format(path, "load", "read")
    metadata, tensors = read(path, verify=verify)
    if "task" in metadata:
        return _task_layer(path, metadata, tensors, bool(batch_first))
    if metadata.get("format") != "lstmkit" or "config" not in metadata or "kind" not in metadata:
        raise ValueError(f"{path}: no lstmkit metadata (format/kind/config) in the safetensors header; it holds "
                         f"tensors {short(sorted(tensors)[:6], 200)}... — convert a plain state_dict with "
                         "lstmkit.io.torch.from_state_dict (or `lstmkit convert --format`) instead")
    config = json_field(path, metadata, "config", dict)
    try:
        config = RNNConfig(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: metadata 'config' is not a valid RNNConfig: {short(e)}") from e
    convention = json_field(path, metadata, "convention", dict, '{"names": "torch"}')
    if convention.get("names") != "torch" or tuple(convention.get("gate_order", ORDERS["torch"][config.mode])) \
            != ORDERS["torch"][config.mode]:
        raise ValueError(f"{path}: unsupported convention {short(convention, 200)}; expected torch names and gate "
                         "order")
    kind = metadata["kind"]
    if kind not in (config.mode, config.mode + "Cell"):
        raise ValueError(f"{path}: metadata kind {short(kind, 40)!r} disagrees with config mode {config.mode!r}")
    cell = kind.endswith("Cell")
    params = {name + "_l0": value for name, value in tensors.items()} if cell else tensors
    changes = {} if batch_first is None else {"batch_first": batch_first}
    try:
        layer = build(config, params, cell, **changes)
    except ValueError as e:
        raise ValueError(f"{path}: tensors disagree with the metadata's config: {e}") from e
    return layer.train(json_field(path, metadata, "training", bool, "true"))  # files before the key: training


def _task_layer(path, metadata: dict, tensors: dict, batch_first: bool):
    """The recurrent layer of a checkpoint of lstmkit.tasks, found by torch's names: built from its config where
    the checkpoint records one (``rnn_configs``: every option, those without tensors too), else read off the
    weights' names and shapes (checkpoints from before that key, whose layers had no such options)."""
    from .torch import from_state_dict, pick_prefix

    weights = {k: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        configs = json_field(path, metadata, "rnn_configs", dict, "{}")
        prefix = pick_prefix(weights)
        recorded = configs.get(prefix.removeprefix("model."))  # the model's own names, as checkpoint.save wrote them
        params = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
        if recorded is None or "weight_ih" in params:  # no record, or a cell (its weights say all a cell has)
            return from_state_dict(weights, batch_first=batch_first, prefix=prefix)
        return build(RNNConfig(**recorded), params, batch_first=batch_first)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: a {short(metadata['task'], 40)!r} checkpoint whose recurrent layer cannot "
                         f"be read: {short(e)}") from e


def json_field(path, metadata: dict, key: str, kind: type, default: str | None = None, where: str = "metadata"):
    """metadata[key] (or ``default`` when absent) parsed as JSON of type ``kind``; ValueError naming the file
    and key otherwise, and ``where`` the metadata is when the key is absent without a default."""
    text = metadata.get(key, default)
    if text is None:
        raise ValueError(f"{path}: no {key!r} in the {where}")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: metadata {key!r} is not JSON ({short(e, 120)})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path}: metadata {key!r}: expected a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def read(path, *, verify: bool = True) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """(metadata, tensors) of any safetensors file; ValueError for anything malformed, truncated or damaged.

    The header is checked whole against the file's size before any tensor is read, so a file of N bytes
    costs O(N) memory. verify: check content_sha256 (tensors) and metadata_sha256 (the other metadata),
    and require both in a file that says lstmkit wrote it (metadata "format": "lstmkit", or a task
    checkpoint's "lstmkit" version); False skips the hashes (foreign files rewritten by other tools).
    """
    path = check_regular(path, "safetensors file")
    with open(path, "rb") as f:
        metadata, entries, size = _read_header(path, f)
        body = f.read()
    if len(body) != size:
        raise ValueError(f"{path}: the file changed while it was read")
    tensors = {name: np.frombuffer(body, dtype, count=count, offset=begin).reshape(shape)
               .astype(dtype.newbyteorder("=")) for name, dtype, shape, begin, count in entries}
    if verify:
        verify_hashes(path, metadata, tensors)
    return metadata, tensors


def read_metadata(path) -> dict[str, str]:
    """The metadata of a safetensors file, read and checked without reading its tensors (no hashes)."""
    path = check_regular(path, "safetensors file")
    with open(path, "rb") as f:
        return _read_header(path, f)[0]


def _read_header(path, f) -> tuple[dict, list, int]:
    """(metadata, entries, body size) from an open file positioned at its start; leaves it at the body."""
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    if len(head) < 8:
        raise ValueError(f"{path}: truncated safetensors file ({len(head)} bytes, no header length)")
    (n,) = struct.unpack("<Q", head)
    if n > MAX_HEADER:
        raise ValueError(f"{path}: not a safetensors file (header length {n} is implausible)")
    if 8 + n > size:
        raise ValueError(f"{path}: truncated safetensors file (header says {n} bytes, file has {size - 8})")
    metadata, entries = _parse_header(path, f.read(n), size - 8 - n)
    return metadata, entries, size - 8 - n


def _parse_header(path, text: bytes, body_size: int) -> tuple[dict, list]:
    """(metadata, [(name, dtype, shape, begin, count)]) from the JSON header, every field checked against
    the format and ``body_size``: tensors laid end to end, covering the body exactly."""
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a safetensors file (header is not JSON: {short(e, 120)})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a safetensors file (header JSON nested too deeply)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: __metadata__: expected an object of strings (the format's rule), got "
                         f"{short(json.dumps(metadata), 120)}")
    entries = []
    for name, info in header.items():
        entries.append(_entry(path, name, info, body_size))
    entries.sort(key=lambda e: e[3])
    end = 0
    for name, dtype, _, begin, count in entries:
        if begin != end:
            raise ValueError(f"{path}: tensor {short(name, 80)!r}: data starts at byte {begin}, expected {end} "
                             "(tensors must lie end to end)")
        end = begin + count * dtype.itemsize
    if end != body_size:
        raise ValueError(f"{path}: {body_size - end} trailing bytes after the last tensor" if end < body_size else
                         f"{path}: truncated safetensors file (the tensors need bytes up to {end}, the file has "
                         f"{body_size})")
    return metadata, entries


def _entry(path, name: str, info, body_size: int) -> tuple:
    """(name, dtype, shape, begin, count) of one header entry; ValueError for any malformed field."""
    where = f"{path}: tensor {short(name, 80)!r}"
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{where}: expected {{dtype, shape, data_offsets}}, got {short(json.dumps(info), 160)}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"{where}: unsupported dtype {short(json.dumps(dtype), 40)}; expected one of "
                         f"{sorted(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_count(d) for d in shape):
        raise ValueError(f"{where}: shape {short(json.dumps(shape), 120)}: expected a list of at most {MAX_RANK} "
                         "non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets) \
            or offsets[0] > offsets[1]:
        raise ValueError(f"{where}: data_offsets {short(json.dumps(offsets), 120)}: expected [begin, end] with "
                         "0 <= begin <= end")
    dtype = DTYPES[dtype]
    count = math.prod(shape)  # Python integers: no overflow, so [2**64] is compared, not wrapped
    begin, stop = offsets
    if stop - begin != count * dtype.itemsize:
        raise ValueError(f"{where}: data_offsets {offsets} hold {stop - begin} bytes; shape {shape} of "
                         f"{info['dtype']} needs {count * dtype.itemsize}")
    if stop > body_size:
        raise ValueError(f"{path}: truncated safetensors file (tensor {short(name, 80)!r} needs bytes up to {stop}, "
                         f"the file has {body_size})")
    return name, dtype, tuple(shape), begin, count


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def verify_hashes(path, metadata: dict, tensors: dict) -> None:
    """Check the file's hashes; require them when the metadata says lstmkit wrote the file."""
    ours = metadata.get("format") == "lstmkit" or "lstmkit" in metadata
    for key, actual in (("content_sha256", lambda: content_hash(tensors)), ("metadata_sha256",
                                                                           lambda: metadata_hash(metadata))):
        expected = metadata.get(key)
        if expected is None:
            if ours:
                raise ValueError(f"{path}: no {key} in a file lstmkit wrote: it was edited or damaged (load it "
                                 "with verify=False only if you trust its contents)")
            continue
        if expected != actual():
            what = "content hash mismatch: the tensors are damaged" if key == "content_sha256" else \
                "metadata hash mismatch: the metadata was changed"
            raise ValueError(f"{path}: {what} ({key} {expected[:12]}... in the metadata)")


def content_hash(tensors: dict[str, np.ndarray]) -> str:
    """Hex SHA-256 over the tensors in name order: each name, dtype, shape and little-endian bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = np.ascontiguousarray(tensors[name], dtype=np.dtype(tensors[name].dtype.name).newbyteorder("<"))
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def stamp_hashes(metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> None:
    """Set metadata's content_sha256 (of ``tensors``) and then metadata_sha256 (of the rest), as ``read`` checks."""
    metadata["content_sha256"] = content_hash(tensors)
    metadata["metadata_sha256"] = metadata_hash(metadata)


def metadata_hash(metadata: dict[str, str]) -> str:
    """Hex SHA-256 of the metadata without its two hash entries (sorted-key JSON)."""
    rest = {k: v for k, v in metadata.items() if k not in ("content_sha256", "metadata_sha256")}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
