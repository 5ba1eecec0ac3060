"""lstmkit.io: the lossless bridge between PyTorch, Keras 3, ONNX and safetensors.

Every format converts to and from an lstmkit numpy layer (torch's names and gate order); the gate reordering
lives in one helper, ``lstmkit.io.gates.reorder``. Each format module has the same verbs where they apply:
``load(path)``, ``save(model, path, overwrite=False)``, ``from_<format>(obj)``, ``to_<format>(layer)``.
Nothing here imports torch, Keras or ONNX until a function needs it.
"""
from .convert import as_layer, convert, format_of, read, write
from .safetensors import load, save


def from_torch(module):
    """An lstmkit layer from a torch.nn / lstmkit.torch LSTM, GRU, LSTMCell or GRUCell."""
    from .torch import from_torch as f

    return f(module)


def to_torch(layer, impl: str = "nn"):
    """A torch.nn (impl="nn") or lstmkit.torch (impl="lstmkit") module with the layer's weights."""
    from .torch import to_torch as f

    return f(layer, impl)


def from_keras(model):
    """An lstmkit layer from a Keras LSTM/GRU layer, Bidirectional, or a model of stacked ones."""
    from .keras import from_keras as f

    return f(model)


def to_keras(layer, return_sequences: bool = True):
    """A keras.Sequential computing the layer (outputs (B, T, D·H), or the last step without return_sequences)."""
    from .keras import to_keras as f

    return f(layer, return_sequences=return_sequences)


def from_onnx(model, **options):
    """An lstmkit layer from an ONNX model (path, bytes or onnx.ModelProto) with LSTM/GRU nodes (options:
    batch_first=, inputs= the values of weights that are graph inputs; see lstmkit.io.onnx.from_onnx)."""
    from .onnx import from_onnx as f

    return f(model, **options)


def to_onnx(layer, **options):
    """An onnx.ModelProto computing the layer (see lstmkit.io.onnx.to_onnx for the options)."""
    from .onnx import to_onnx as f

    return f(layer, **options)


__all__ = ["load", "save", "read", "write", "convert", "format_of", "as_layer", "from_torch", "to_torch",
           "from_keras", "to_keras", "from_onnx", "to_onnx"]
