"""PyTorch: live modules and ``.pt/.pth`` state_dicts, both ways. Same names and gate order as lstmkit.

``from_torch(module)`` accepts torch.nn.LSTM/GRU/LSTMCell/GRUCell and lstmkit.torch's drop-ins;
``to_torch(layer)`` builds torch.nn's (or lstmkit.torch's) module. A state_dict file holds no architecture,
so ``from_state_dict``/``load`` infer it from the weight shapes:

    weight_ih_l0 (G·H, I)   weight_hh_l0 (G·H, P)   weight_hr_l0 (P, H) only with proj_size
    G = 4 → LSTM, 3 → GRU   (G·H / H, with H from weight_hr or else from weight_hh's square shape)
    num_layers from the _l{k} suffixes, bidirectional from _reverse, bias from bias_ih presence.

batch_first and dropout are not in the weights: pass them (CLI flags ``--batch-first``). Nor are the variant
options (docs/variants.md): ``save`` refuses a variant model by name and ``from_state_dict`` a state_dict holding
variant tensors (peephole, layer norm), where a plain layer read back would compute something else; safetensors
keeps them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .._optional import require
from ..params import RNNConfig, to_numpy
from .files import atomic_write, check_zip, short
from .model import build, unpack

_VARIANT_KEY = re.compile(r"^(?P<prefix>.*?)(?:peephole|ln_(?:ih|hh|cell)_(?:weight|bias))(?:_l\d+(?:_reverse)?)?$")
_KEY = re.compile(r"^(?P<prefix>.*?)(?P<name>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                  r"(?P<suffix>_l\d+(?:_reverse)?)?$")


def from_torch(module):
    """An lstmkit numpy layer (or cell) with ``module``'s architecture and weights (copied; float16 and bfloat16
    weights as float32, which holds them exactly), in ``module``'s mode: an eval-mode module gives an eval-mode
    layer, so dropout and the variants' training-only options act alike in both."""
    kind = _torch_kind(module)
    state = {k: _numpy(v) for k, v in module.state_dict().items()}
    mode = "LSTM" if "LSTM" in kind else "GRU"
    if kind.endswith("Cell"):
        config = RNNConfig(mode, module.input_size, module.hidden_size, bias=module.bias)
        layer = build(config, {k + "_l0": v for k, v in state.items()}, cell=True)
    else:
        config = getattr(module, "config", None)  # lstmkit.torch modules carry theirs, variant options included
        if not isinstance(config, RNNConfig):
            config = RNNConfig(mode, module.input_size, module.hidden_size, module.num_layers, bool(module.bias),
                               bool(module.batch_first), float(module.dropout), bool(module.bidirectional),
                               int(getattr(module, "proj_size", 0)))
        layer = build(config, state)
    return layer.train(bool(module.training))


def _torch_kind(module) -> str:
    """"LSTM", "GRU", "LSTMCell" or "GRUCell": which torch.nn (or lstmkit.torch) recurrent module ``module`` is,
    by class, not by name (a user's model named ``MyLSTMNet`` is not an LSTM); TypeError naming what came."""
    torch = require("torch", "torch")
    name = type(module).__name__
    if "quantized" in type(module).__module__:
        raise TypeError(f"module: {type(module).__module__}.{name} is a quantized torch module, whose packed "
                        "weights lstmkit does not read; convert the float module before quantizing it, or quantize "
                        "the lstmkit layer (lstmkit.quantize)")
    from .. import torch as lstmkit_torch

    for kind in ("LSTMCell", "GRUCell", "LSTM", "GRU"):
        if isinstance(module, (getattr(torch.nn, kind), getattr(lstmkit_torch, kind))):
            return kind
    raise TypeError(f"module: expected a torch.nn or lstmkit.torch LSTM, GRU, LSTMCell or GRUCell, got {name}; "
                    "for a model holding one, pass that submodule (e.g. model.rnn)")


def to_torch(layer, impl: str = "nn"):
    """A torch module with ``layer``'s architecture and weights.

    impl: "nn" for torch.nn.LSTM/GRU/LSTMCell/GRUCell, "lstmkit" for lstmkit.torch's drop-ins.
    The module is in eval mode, with the layer's dtype (float32 or float64).
    """
    torch = require("torch", "torch")
    if impl == "nn":
        classes = torch.nn
    elif impl == "lstmkit":
        classes = require("lstmkit.torch", "torch")
    else:
        raise ValueError(f"impl: expected 'nn' or 'lstmkit', got {impl!r}")
    config, _, cell = unpack(layer)
    c = config
    if impl == "nn":
        c.refuse_variants("to_torch(impl='nn'): torch.nn")
    if cell:
        module = getattr(classes, c.mode + "Cell")(c.input_size, c.hidden_size, c.bias)
    else:
        kwargs = {"proj_size": c.proj_size} if c.mode == "LSTM" else {}
        if impl == "lstmkit":  # lstmkit.torch's layers take the variant options (docs/variants.md)
            kwargs.update(c.variant_options())
        module = getattr(classes, c.mode)(c.input_size, c.hidden_size, c.num_layers, c.bias, c.batch_first,
                                          c.dropout, c.bidirectional, **kwargs)
    dtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    module = module.to(dtype)
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()})
    return module.eval()


def from_state_dict(state: dict, *, mode: str | None = None, batch_first: bool = False, prefix: str | None = None):
    """An lstmkit layer or cell from a torch state_dict (tensors or arrays), architecture read off the shapes.

    mode: "LSTM"/"GRU" to check (or decide) the gate count; prefix: the key prefix of the RNN inside a
    bigger model's state_dict (e.g. "encoder.rnn."), needed only when several RNNs are in it.
    """
    arrays = {k: _numpy(v) for k, v in state.items()}
    prefix = pick_prefix(arrays, prefix)
    params = {}
    for key, value in arrays.items():
        m = _KEY.match(key)
        if m and m["prefix"] == prefix:
            params[m["name"] + (m["suffix"] or "")] = value
    variant = sorted(k for k in arrays if (m := _VARIANT_KEY.match(k)) and m["prefix"] == prefix)
    if variant:
        raise ValueError(f"state_dict: {', '.join(variant[:4])}{', ...' if len(variant) > 4 else ''} are tensors of "
                         "lstmkit's variant options (docs/variants.md), which a torch state_dict's shapes cannot "
                         "describe (nor the options without tensors); load it into lstmkit.torch's module built with "
                         "the options (load_state_dict), or save the model as safetensors, which keeps them")
    cell = "weight_ih" in params
    if cell:
        params = {k + "_l0": v for k, v in params.items()}
    config = infer_config(params, mode=mode, batch_first=batch_first)
    return build(config, params, cell)


def infer_config(params: dict, *, mode: str | None = None, batch_first: bool = False) -> RNNConfig:
    """The RNNConfig implied by torch-named weights (``_l{k}`` suffixes); ValueError when they cannot say."""
    if "weight_ih_l0" not in params or "weight_hh_l0" not in params:
        raise ValueError(f"state_dict: no weight_ih_l0/weight_hh_l0 (torch LSTM/GRU names); got {sorted(params)}")
    w_ih, w_hh = params["weight_ih_l0"], params["weight_hh_l0"]
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(f"state_dict: weight_ih_l0 {w_ih.shape} and weight_hh_l0 {w_hh.shape} must be matrices")
    w_hr = params.get("weight_hr_l0")
    if 0 in w_ih.shape + w_hh.shape or (w_hr is not None and (w_hr.ndim != 2 or 0 in w_hr.shape)):
        raise ValueError(f"state_dict: weight_ih_l0 {w_ih.shape}, weight_hh_l0 {w_hh.shape}"
                         f"{'' if w_hr is None else f', weight_hr_l0 {w_hr.shape}'} must be non-empty matrices")
    rows, proj = w_hh.shape
    hidden = w_hr.shape[1] if w_hr is not None else proj
    gates = rows // hidden if rows % hidden == 0 else 0
    inferred = {4: "LSTM", 3: "GRU"}.get(gates)
    if mode is not None:
        mode = mode.upper()
        if inferred and mode != inferred:
            raise ValueError(f"mode: {mode} was given but weight_hh_l0 {w_hh.shape} has {gates} gate blocks "
                             f"({inferred})")
    mode = mode or inferred
    if mode is None:
        raise ValueError(f"state_dict: cannot tell LSTM from GRU (weight_hh_l0 {w_hh.shape}); pass mode= (--mode)")
    hidden = rows // (4 if mode == "LSTM" else 3)
    indices = {int(m[1]) for k in params if (m := re.search(r"_l(\d{1,9})(?:_reverse)?$", k))}
    layers = 1 + max(indices)
    if len(indices) != layers:  # all of 0..layers-1, checked before a config of ``layers`` layers is built
        missing = sorted(set(range(min(layers, len(indices) + 3))) - indices)[:3]
        raise ValueError(f"state_dict: layer suffixes _l0.._l{layers - 1} are not all present (e.g. _l{missing[0]} "
                         f"is missing; {len(indices)} layers found)")
    return RNNConfig(mode, int(w_ih.shape[1]), int(hidden), layers, "bias_ih_l0" in params, batch_first,
                     bidirectional="weight_ih_l0_reverse" in params,
                     proj_size=int(proj) if "weight_hr_l0" in params else 0)


def load(path, *, mode: str | None = None, batch_first: bool = False, prefix: str | None = None):
    """Read a ``.pt/.pth`` state_dict with ``torch.load(weights_only=True)`` (no pickled code runs)."""
    torch = require("torch", "torch")
    check_zip(path, "torch weights file")  # a regular file whose members cannot inflate past a bound
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError for bad or truncated files
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:  # torch's advice (weights_only=False) is not ours to give a user
            raise ValueError(f"{path}: holds a pickled Python object ({found.group(1)}: a whole module saved with "
                             "torch.save(model)?), "
                             "which lstmkit does not unpickle, as unpickling can run any code; save the weights "
                             "with torch.save(model.state_dict(), path) and read that") from e
        raise ValueError(f"{path}: not a readable torch weights file ({type(e).__name__}: {short(e)})") from e
    if hasattr(state, "state_dict") and not isinstance(state, dict):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
    try:
        return from_state_dict(state, mode=mode, batch_first=batch_first, prefix=prefix)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def save(model, path, *, overwrite: bool = False) -> Path:
    """Write the model's torch state_dict (plain tensors, loadable with weights_only=True) atomically."""
    torch = require("torch", "torch")
    from .convert import as_layer

    layer = as_layer(model)
    # a torch state_dict records the plain architecture in its shapes only: a variant read back would be the plain cell
    layer.config.refuse_variants(f"{path}: a torch state_dict (.pt)")
    state = {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp), overwrite)


def _numpy(value) -> np.ndarray:
    """A weight (tensor or array) as a NumPy array; bfloat16, which NumPy lacks, as float32 (it holds it exactly)."""
    if str(getattr(value, "dtype", "")) == "torch.bfloat16":
        value = value.float()
    return np.asarray(to_numpy(value))


def pick_prefix(arrays: dict, prefix: str | None = None) -> str:
    """The key prefix of the one RNN among torch-named ``arrays`` ("" at the top, "encoder.rnn." inside a model), or
    ``prefix`` checked; ValueError when there is none, or several and no ``prefix``."""
    found = {m["prefix"] for k in arrays if (m := _KEY.match(k)) and m["name"] == "weight_ih"}
    if prefix is not None:
        if prefix not in found:
            raise ValueError(f"prefix: no weight_ih under {prefix!r}; the RNNs found are under {sorted(found)}")
        return prefix
    if not found:
        raise ValueError(f"state_dict: no LSTM/GRU weights (weight_ih...) among keys {sorted(arrays)[:8]}")
    if len(found) > 1:
        raise ValueError(f"state_dict: several RNNs under prefixes {sorted(found)}; pass prefix= (--prefix)")
    return found.pop()
