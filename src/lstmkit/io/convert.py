"""Format dispatch: which module reads or writes a path, and ``as_layer`` for live objects of any framework.

    extension          format        read                 write
    .safetensors       safetensors   io.safetensors.load  io.safetensors.save
    .pt, .pth          torch         io.torch.load        io.torch.save
    .keras             keras         io.keras.load        io.keras.save
    .onnx              onnx          io.onnx.load         io.onnx.save
"""
from __future__ import annotations

import importlib
from pathlib import Path

FORMATS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".keras": "keras", ".onnx": "onnx"}
NAMES = ("safetensors", "torch", "keras", "onnx")


def format_of(path, fmt: str | None = None) -> str:
    """The format named by ``fmt``, else by the extension of ``path``; ValueError when neither says."""
    if fmt is not None:
        if fmt not in NAMES:
            raise ValueError(f"format: expected one of {NAMES}, got {fmt!r}")
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown extension {ext!r}; expected one of {sorted(FORMATS)} (or name "
                         "the format: fmt= in Python, --format / --input-format in lstmkit convert)")
    return FORMATS[ext]


def check_writable_early(path, overwrite: bool) -> None:
    """Refuse an existing output before any reading work (FileExistsError; the CLI exits with code 2)."""
    from .files import check_writable

    check_writable(path, overwrite)


def _module(fmt: str):
    return importlib.import_module(f"lstmkit.io.{fmt}")


def read(path, fmt: str | None = None, **options):
    """Load any supported file into an lstmkit layer or cell. options go to the format's ``load``
    (torch: mode, batch_first, prefix; safetensors/onnx/keras: batch_first)."""
    from .files import check_regular

    check_regular(path)  # FileNotFoundError, or ValueError for a FIFO/device (which would block or never end)
    return _module(format_of(path, fmt)).load(path, **options)


def write(model, path, fmt: str | None = None, *, overwrite: bool = False, **options) -> Path:
    """Write ``model`` (anything ``as_layer`` takes) in the format of ``path``; options go to the format's
    ``save`` (onnx: streaming, opset)."""
    return _module(format_of(path, fmt)).save(as_layer(model), path, overwrite=overwrite, **options)


def convert(src, dst, *, src_format: str | None = None, dst_format: str | None = None, overwrite: bool = False,
            read_options: dict | None = None, write_options: dict | None = None):
    """Read ``src``, write ``dst``; returns the lstmkit layer that went between them."""
    layer = read(src, src_format, **(read_options or {}))
    write(layer, dst, dst_format, overwrite=overwrite, **(write_options or {}))
    return layer


def as_layer(model):
    """An lstmkit layer or cell from an lstmkit layer (as is), a torch module, or a Keras layer/model."""
    from ..layers import RNNBase, _CellBase

    if isinstance(model, (RNNBase, _CellBase)):
        return model
    module = type(model).__module__ or ""
    if module.startswith(("torch", "lstmkit.torch")):
        from .torch import from_torch

        return from_torch(model)
    if module.startswith("keras"):
        from .keras import from_keras

        return from_keras(model)
    raise TypeError(f"model: expected an lstmkit, torch or Keras LSTM/GRU, got {type(model).__name__}")
