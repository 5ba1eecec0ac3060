"""Keras 3: live layers/models and ``.keras`` files, both ways (run Keras with KERAS_BACKEND=torch).

    Keras                                   torch / lstmkit
    kernel (I, G·H)                         weight_ih (G·H, I) = kernel.T, gates reordered
    recurrent_kernel (H, G·H)               weight_hh (G·H, H)
    LSTM bias (4H,), one vector             bias_ih = bias, bias_hh = 0   (back: bias = bias_ih + bias_hh)
    GRU bias (2, 3H), reset_after=True      bias_ih = bias[0], bias_hh = bias[1]
    GRU bias (3H,), reset_after=False       linear_before_reset=False, bias_ih = bias, bias_hh = 0
    GRU gate order z, r, h                  r, z, n
    Bidirectional(merge_mode="concat")      bidirectional=True
    stacked layers in a Sequential          num_layers (all but the last return_sequences=True)

Keras is batch-major, so layers read from Keras have batch_first=True. Not representable, and refused with a
ValueError naming the cause: activations other than tanh/sigmoid, variant options other than the GRU's
linear_before_reset, merge modes other
than "concat", go_backwards outside Bidirectional, a Bidirectional whose backward_layer's options differ from its
forward layer's, layers other than LSTM/GRU in a model, a model that is not a plain stack (a shared layer,
branches, initial_state or other inputs passed to a layer, a subclassed model), and (to Keras) proj_size and cells.
Layers read from Keras come back in evaluation mode, as Keras predicts.
"""
from __future__ import annotations

import json
import math
import os
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._optional import require
from ..params import RNNConfig, suffix
from .files import INFLATE_RATIO, INFLATE_SLACK, atomic_write, check_regular, check_zip_members, short
from .gates import reorder
from .model import build, unpack


def _keras():
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "torch")  # lstmkit[keras] brings torch, not tensorflow
    return require("keras", "keras")


# --------------------------------------------------------------------------------------------- Keras -> lstmkit

def from_keras(model, *, batch_first: bool = True):
    """An lstmkit layer from a Keras LSTM/GRU layer, a Bidirectional, or a model whose layers are a stack of them.

    batch_first: the layout of the returned layer (Keras' own is batch-first).
    The layer comes back in evaluation mode (``.eval()``), the semantics of Keras' ``predict`` and of a call
    without ``training=True``; call ``.train()`` to train it (Keras' dropout/recurrent_dropout are not carried).
    A model must be a plain stack: Sequential, or functional with one input, each RNN layer called once on the
    previous layer's output alone (no initial_state, mask or constants), the last layer's outputs the model's.
    """
    stack = _rnn_layers(model)
    per_layer = [_read_layer(layer, last=k == len(stack) - 1) for k, layer in enumerate(stack)]
    first = per_layer[0]
    params = {}
    for k, entry in enumerate(per_layer):
        expected_in = first["input_size"] if k == 0 else first["directions"] * first["units"]
        kind = ("mode", "units", "directions", "bias", "options")
        if [entry[k] for k in kind] != [first[k] for k in kind] or entry["input_size"] != expected_in:
            raise ValueError(f"Keras layer {entry['name']!r} does not stack on {first['name']!r}: lstmkit needs one "
                             "kind of RNN with equal units, directions, use_bias and reset_after in every layer")
        for d, p in enumerate(entry["params"]):
            params.update({name + suffix(k, d): value for name, value in p.items()})
    config = RNNConfig(first["mode"], first["input_size"], first["units"], len(per_layer), first["bias"],
                       batch_first, bidirectional=first["directions"] == 2, **first["options"])
    # lstmkit layers start in training mode, like torch modules; a Keras model predicts in inference mode
    return build(config, params).eval()


_RNN = ("LSTM", "GRU", "Bidirectional")


def _rnn_layers(model) -> list:
    """The recurrent layers of a layer or model, in order; ValueError naming anything else in the model."""
    name = type(model).__name__
    if name in _RNN:
        return [model]
    if not hasattr(model, "layers"):
        raise TypeError(f"model: expected a Keras LSTM, GRU, Bidirectional or a model of them, got {name}")
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    others = [f"{layer.name} ({type(layer).__name__})" for layer in layers
              if type(layer).__name__ not in _RNN]
    if others or not layers:
        raise ValueError(f"Keras model {model.name!r}: lstmkit reads models made only of LSTM/GRU/Bidirectional "
                         f"layers; found {others or 'none'}")
    return _stack_order(model, layers)


_STACK = ("lstmkit reads a plain stack: the model's one input -> each RNN layer called once, on the previous "
          "layer's output alone -> the last layer's outputs")


def _stack_order(model, layers: list) -> list:
    """``layers`` in the order the model's graph calls them; ValueError where the graph is not a plain stack.

    model.layers lists each layer once, whatever the wiring, so a shared layer, parallel branches or a state
    handed on through initial_state would otherwise read as a stack that computes something else."""
    keras = _keras()
    if isinstance(model, keras.Sequential):
        graph = model._functional  # built once the input shape is known; None before
        if graph is None:  # applied in list order, so a chain, but one layer object may be listed twice
            _refuse_repeats(model, layers)
            return layers
    elif hasattr(model, "_nodes_by_depth"):  # a functional model
        graph = model
    else:
        raise ValueError(f"Keras model {model.name!r} ({type(model).__name__}): a subclassed model's call() is Python "
                         f"code lstmkit cannot read; {_STACK} (build it as a Sequential or functional model)")
    chain = _graph_chain(model, graph)
    _refuse_repeats(model, chain)
    stray = [layer.name for layer in layers if not any(layer is c for c in chain)]
    if stray:
        raise ValueError(f"Keras model {model.name!r}: layers {stray} are not on the path from the input to the "
                         f"output; {_STACK}")
    return chain


def _graph_chain(model, graph) -> list:
    """The layers from the graph's output node back to its input, each read from the previous one's output 0,
    returned input first; ValueError naming the layer or tensor where the graph is not a single chain."""
    inputs, outputs = list(graph.inputs), list(graph.outputs)
    if len(inputs) != 1:
        raise ValueError(f"Keras model {model.name!r}: {len(inputs)} inputs; {_STACK}")
    node = _producer(outputs[0])
    if not all(any(t is o for o in node.outputs) for t in outputs) or outputs[0] is inputs[0]:
        names = [f"{t.name} (from {_producer(t).operation.name})" for t in outputs]
        raise ValueError(f"Keras model {model.name!r}: outputs {names} are not all outputs of one RNN layer; "
                         f"{_STACK}")
    chain = []
    while True:
        kind = type(node.operation).__name__
        if kind not in _RNN:  # model.layers leaves out plain operations (keras.ops.tanh(x), x * 2)
            raise ValueError(f"Keras model {model.name!r}: operation {node.operation.name!r} ({kind}) in the graph; "
                             f"lstmkit reads models made only of LSTM/GRU/Bidirectional layers")
        x = _sole_input(model, node)
        chain.append(node.operation)
        if x is inputs[0]:
            return chain[::-1]
        node = _producer(x)
        if x is not node.outputs[0]:  # a returned state, not the sequence (or last step) output
            raise ValueError(f"Keras model {model.name!r}: layer {chain[-1].name!r} reads output "
                             f"{node.outputs.index(x)} of layer {node.operation.name!r}; {_STACK}")


def _producer(tensor):
    """The graph node (one call of a layer) that computed a Keras symbolic tensor."""
    history = tensor._keras_history  # (operation, node_index, tensor_index)
    return history.operation._inbound_nodes[history.node_index]


def _sole_input(model, node):
    """The one tensor a layer call reads; ValueError when the call passes anything more (initial_state, a mask,
    constants, training=True: each changes what the layer computes, and an lstmkit stack takes none of them)."""
    args, kwargs = node.arguments.args, node.arguments.kwargs
    extra = [f"argument {k + 2}" for k in range(len(args) - 1)]
    harmless = {"training": False}  # inference, what the lstmkit layer computes
    extra += [f"{name}={value!r}" if isinstance(value, (bool, int, float, str)) else name
              for name, value in kwargs.items() if value is not None and harmless.get(name, None) is not value]
    tensors = node.arguments.keras_tensors
    if extra or len(args) != 1 or len(tensors) != 1 or args[0] is not tensors[0]:
        raise ValueError(f"Keras model {model.name!r}: layer {node.operation.name!r} is called with "
                         f"{', '.join(extra) or 'a structure of tensors'} besides its input; {_STACK}")
    return args[0]


def _refuse_repeats(model, layers: list) -> None:
    """ValueError naming a layer object the model calls more than once (one set of weights, applied twice)."""
    for layer in layers:
        calls = sum(other is layer for other in layers)
        if calls > 1:
            raise ValueError(f"Keras model {model.name!r}: layer {layer.name!r} is called {calls} times; {_STACK}")


def _read_layer(layer, last: bool) -> dict:
    """One Keras layer -> {mode, units, directions, bias, input_size, params per direction (torch names)}."""
    if type(layer).__name__ == "Bidirectional":
        if layer.merge_mode != "concat":
            raise ValueError(f"Keras layer {layer.name!r}: merge_mode={layer.merge_mode!r}; only 'concat' maps to "
                             "a bidirectional torch RNN")
        _check_same_options(layer)
        directions = [(layer.forward_layer, False), (layer.backward_layer, True)]
    else:
        directions = [(layer, False)]
    out = None
    for rnn, backwards in directions:
        entry = _read_rnn(rnn, backwards)
        if not last and not rnn.return_sequences:
            raise ValueError(f"Keras layer {layer.name!r}: return_sequences=False before another RNN layer")
        if out is None:
            out = {**entry, "name": layer.name, "directions": len(directions), "params": [entry["params"]]}
        else:
            out["params"].append(entry["params"])
    return out


# Config entries that do not change what a direction computes at inference: naming, direction (which
# Bidirectional sets), initialisation, training-only terms (lstmkit carries no Keras dropout; the layer comes back
# in eval mode), masking without a mask (_sole_input refuses one) and how Keras schedules the loop.
_SAME_RESULT = {"name", "go_backwards", "trainable", "seed", "dropout", "recurrent_dropout", "unit_forget_bias",
                "zero_output_for_mask", "unroll", "implementation", "use_cudnn"}


def _check_same_options(layer) -> None:
    """ValueError naming the first option a Bidirectional's backward layer sets unlike its forward layer:
    lstmkit computes both directions with one set of options (an explicit backward_layer may differ)."""
    forward, backward = layer.forward_layer, layer.backward_layer
    pairs = {"class": (type(forward).__name__, type(backward).__name__)}
    f_config, b_config = forward.get_config(), backward.get_config()
    for key in sorted(set(f_config) | set(b_config)):  # every other key counts, an option Keras adds later too
        if key not in _SAME_RESULT and not key.endswith(("_initializer", "_regularizer", "_constraint")):
            pairs[key] = (f_config.get(key), b_config.get(key))
    for key, (f_value, b_value) in pairs.items():
        if f_value != b_value:
            f_value, b_value = short(repr(f_value), 80), short(repr(b_value), 80)
            raise ValueError(f"Keras Bidirectional {layer.name!r}: the backward layer has {key}={b_value}, the "
                             f"forward layer {key}={f_value}; lstmkit computes both directions with one set of options")


def _read_rnn(rnn, backwards: bool) -> dict:
    mode = type(rnn).__name__
    where = f"Keras {mode} {rnn.name!r}"
    if mode not in ("LSTM", "GRU"):
        raise ValueError(f"{where}: expected LSTM or GRU")
    activation, recurrent = rnn.activation.__name__, rnn.recurrent_activation.__name__
    if (activation, recurrent) != ("tanh", "sigmoid"):
        raise ValueError(f"{where}: activation={activation}, recurrent_activation={recurrent}; lstmkit computes "
                         "tanh and sigmoid only")
    if bool(rnn.go_backwards) != backwards:
        raise ValueError(f"{where}: go_backwards={rnn.go_backwards} outside a Bidirectional wrapper has no torch "
                         "equivalent")
    if getattr(rnn, "stateful", False):
        raise ValueError(f"{where}: stateful=True carries a state from one Keras call to the next, which an "
                         "lstmkit layer does not hold (it starts from the hx its caller passes); read the layer "
                         "built with stateful=False and pass the state as hx")
    weights = rnn.get_weights()  # kernel (I, G·H), recurrent_kernel (H, G·H)[, bias]
    if not weights:  # Keras makes the weights when the layer first sees an input
        raise ValueError(f"{where}: not built, no weights yet; call it on an input (or build it) first")
    kernel, recurrent_kernel = weights[0], weights[1]
    p = {"weight_ih": reorder(kernel, mode, "keras", "torch", axis=1).T,
         "weight_hh": reorder(recurrent_kernel, mode, "keras", "torch", axis=1).T}
    if rnn.use_bias:
        bias = weights[2]
        if mode == "LSTM":  # one bias vector: all of it goes to bias_ih
            p["bias_ih"] = reorder(bias, mode, "keras", "torch")
            p["bias_hh"] = np.zeros_like(p["bias_ih"])
        elif rnn.reset_after:  # (2, 3H) = input bias, recurrent bias
            p["bias_ih"] = reorder(bias[0], mode, "keras", "torch")
            p["bias_hh"] = reorder(bias[1], mode, "keras", "torch")
        else:  # one (3H,) vector, added outside the reset as both of lstmkit's are with linear_before_reset=False
            p["bias_ih"] = reorder(bias, mode, "keras", "torch")
            p["bias_hh"] = np.zeros_like(p["bias_ih"])
    p = {k: np.ascontiguousarray(v) for k, v in p.items()}
    options = {"linear_before_reset": False} if mode == "GRU" and not rnn.reset_after else {}
    return {"mode": mode, "units": int(rnn.units), "bias": bool(rnn.use_bias), "input_size": int(kernel.shape[0]),
            "params": p, "options": options}


# --------------------------------------------------------------------------------------------- lstmkit -> Keras

def to_keras(model, *, return_sequences: bool = True):
    """A ``keras.Sequential`` computing ``model``: input (B, T, I) -> (B, T, D·H), or (B, D·H) for the last step
    (each direction's final state, as Keras returns) without return_sequences."""
    keras = _keras()
    from .convert import as_layer

    layer = as_layer(model)
    config, params, cell = unpack(layer)
    c = config
    if cell:
        raise ValueError(f"{c.mode}Cell: Keras cells are not layers; convert a one-layer {c.mode} instead")
    if c.proj_size:
        raise ValueError(f"proj_size={c.proj_size}: Keras' LSTM has no projection; export to ONNX or safetensors")
    replace(c, linear_before_reset=True).refuse_variants("to_keras: Keras")  # reset_after=False holds the one
    dtype = "float64" if layer.dtype == np.float64 else "float32"
    stack = [keras.Input((None, c.input_size), dtype=dtype)]
    for k in range(c.num_layers):
        seq = return_sequences or k < c.num_layers - 1
        kwargs = dict(units=c.hidden_size, return_sequences=seq, use_bias=c.bias, dtype=dtype)
        kwargs.update({"reset_after": c.linear_before_reset} if c.mode == "GRU" else {})
        rnn = getattr(keras.layers, c.mode)(**kwargs)
        # the wrapper's dtype too: Keras' default policy (float32) would cast a float64 model's values around it
        stack.append(keras.layers.Bidirectional(rnn, merge_mode="concat", dtype=dtype) if c.bidirectional else rnn)
    keras_model = keras.Sequential(stack)
    for k, keras_layer in enumerate(keras_model.layers):
        weights = [w for d in range(c.num_directions) for w in _keras_weights(c, params, k, d)]
        keras_layer.set_weights(weights)
    return keras_model


def _keras_weights(c: RNNConfig, params: dict, layer: int, direction: int) -> list[np.ndarray]:
    """[kernel, recurrent_kernel(, bias)] of one direction of one layer, in Keras' layout and gate order."""
    s = suffix(layer, direction)
    weights = [reorder(params["weight_ih" + s], c.mode, "torch", "keras").T,
               reorder(params["weight_hh" + s], c.mode, "torch", "keras").T]
    if c.bias:
        b_ih = reorder(params["bias_ih" + s], c.mode, "torch", "keras")
        b_hh = reorder(params["bias_hh" + s], c.mode, "torch", "keras")
        one_vector = c.mode == "LSTM" or not c.linear_before_reset  # Keras' LSTM and GRU(reset_after=False)
        weights.append(b_ih + b_hh if one_vector else np.stack([b_ih, b_hh]))
    return [np.ascontiguousarray(w) for w in weights]


# ------------------------------------------------------------------------------------------------------ files

def load(path, *, batch_first: bool | None = None):
    """Read a ``.keras`` file (safe_mode: no lambdas run) into an lstmkit layer."""
    keras = _keras()
    try:
        check_keras_file(path)
    except zipfile.BadZipFile as e:  # a member that fails its CRC while the sizes are checked
        raise ValueError(f"{path}: a damaged .keras file ({short(e)})") from e
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" of a file that is there
        raise ValueError(f"{path}: not a readable .keras model (a .keras file is a zip archive Keras writes; this "
                         "one is not a zip archive)")
    try:
        model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # Keras raises ValueError/OSError/BadZipFile for foreign or truncated files
        raise ValueError(f"{path}: not a readable .keras model ({type(e).__name__}: {short(e)})") from e
    try:
        return from_keras(model, batch_first=True if batch_first is None else batch_first)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def check_keras_file(path) -> None:
    """Bound what Keras will allocate, before it builds or reads anything: the zip's members (check_zip_members),
    the HDF5 datasets' declared sizes and chunk counts (unwritten gzip chunks read as fill values, so a few
    KB can declare gigabytes, or 2**20 chunks that cost 3 GB to read), and the layer sizes in config.json
    (Keras builds every weight before loading one), all against the bytes the file holds. HDF5 external
    storage and virtual datasets are refused: they read other files."""
    path = check_regular(path, ".keras file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip: Keras says so
    with archive:
        check_zip_members(path, archive, ".keras file")
        names = set(archive.namelist())
        if "model.weights.h5" not in names or "config.json" not in names:
            return  # Keras refuses it with its own message
        stored, size = _h5_declared(path, archive.read("model.weights.h5"))
        try:
            config = json.loads(archive.read("config.json"))
        except RecursionError:
            raise ValueError(f"{path}: config.json is nested too deeply") from None
        except ValueError:
            return  # Keras reports the broken JSON
    units, inputs = [], []
    try:
        _sizes(config, units, inputs, depth=0)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    widest = max(units, default=0)
    need = widest * max([widest, *inputs])  # a recurrent kernel is units x G·units, a kernel inputs x G·units
    if need > stored:
        raise ValueError(f"{path}: config.json declares units={widest} (and inputs up to {max(inputs, default=0)}), "
                         f"{need:,}+ weights, but model.weights.h5 ({size:,} bytes) stores {stored:,} values")


def _h5_declared(path, data: bytes) -> tuple[int, int]:
    """(values declared by every dataset, bytes) of the weights file; ValueError above the file's bound."""
    import io

    h5py = require("h5py", "keras")
    declared, bad = [0, 0, 0], []  # bytes, values, chunks

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            values = math.prod(obj.shape or ())
            declared[0] += values * max(obj.dtype.itemsize, 1)
            declared[1] += values
            if obj.chunks:  # HDF5 spends ~3 KB on each chunk it reads, written or not
                declared[2] += math.prod(-(-n // c) for n, c in zip(obj.shape, obj.chunks))
            if obj.external or obj.is_virtual:
                bad.append(name)

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, RuntimeError):
        return 0, len(data)  # not HDF5: Keras says so
    if bad:
        raise ValueError(f"{path}: model.weights.h5 dataset {short(bad[0], 80)!r} reads external or virtual storage")
    bound = INFLATE_RATIO * len(data) + INFLATE_SLACK
    if declared[0] > bound:
        raise ValueError(f"{path}: model.weights.h5 ({len(data):,} bytes) declares {declared[0]:,} bytes of "
                         f"datasets; refused above {bound:,}")
    chunk_bound = len(data) // 8 + 1024  # Keras writes contiguous datasets; a stored chunk costs file bytes
    if declared[2] > chunk_bound:
        raise ValueError(f"{path}: model.weights.h5 ({len(data):,} bytes) declares {declared[2]:,} HDF5 chunks; "
                         f"refused above {chunk_bound:,}")
    return declared[1], len(data)


_LAYERS = ("InputLayer", "LSTM", "GRU", "Bidirectional")


def _sizes(node, units: list, inputs: list, depth: int) -> None:
    """Collect every "units" and input-shape integer of a Keras config (any nesting, bounded depth);
    ValueError for a layer lstmkit cannot read."""
    if depth > 64:
        raise ValueError("config.json: layers nested more than 64 deep")
    if isinstance(node, dict):
        layer = node.get("class_name")
        if str(node.get("module", "")).startswith("keras.layers") and layer not in _LAYERS:
            # from_keras refuses other layers anyway, but Keras would first build them (an Embedding of
            # input_dim=10**9 allocates before anything can say no)
            raise ValueError(f"config.json: layer {str(layer)[:40]!r}; lstmkit reads models made only of "
                             f"{', '.join(sorted(_LAYERS))} layers")
        for key, value in node.items():
            if key == "units" and isinstance(value, int):
                units.append(value)
            elif key in ("batch_shape", "batch_input_shape", "input_shape") and isinstance(value, list):
                inputs.extend(v for v in value if isinstance(v, int))
            else:
                _sizes(value, units, inputs, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _sizes(value, units, inputs, depth + 1)


def save(model, path, *, overwrite: bool = False, return_sequences: bool = True) -> Path:
    """Write ``to_keras(model)`` as a ``.keras`` file, atomically; refuses an existing file unless overwrite."""
    keras_model = to_keras(model, return_sequences=return_sequences)
    return atomic_write(path, lambda tmp: keras_model.save(tmp), overwrite)
