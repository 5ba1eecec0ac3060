"""What every format reads into and writes from: an lstmkit numpy layer or cell, as (config, params, cell).

``params`` always use torch's names with the layer suffix (``weight_ih_l0``...), also for cells, whose own
state_dict drops the suffix; ``cell`` says whether the model is a one-step LSTMCell/GRUCell.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..params import RNNConfig, check_state_dict
from .files import short


def unpack(model) -> tuple[RNNConfig, dict[str, np.ndarray], bool]:
    """(config, params with ``_l0`` names, is_cell) of an lstmkit layer or cell."""
    from ..layers import RNNBase, _CellBase

    if isinstance(model, RNNBase):
        return model.config, model.state_dict(), False
    if isinstance(model, _CellBase):
        return model.config, {name + "_l0": value for name, value in model.state_dict().items()}, True
    raise TypeError(f"model: expected an lstmkit LSTM, GRU, LSTMCell or GRUCell, got {type(model).__name__}"
                    " (convert torch/Keras/ONNX models with from_torch/from_keras/from_onnx first)")


def build(config: RNNConfig, params: dict, cell: bool = False, dtype=None, **config_changes):
    """An lstmkit layer (or cell) with ``params`` loaded and checked against ``config``.

    params: torch names with the ``_l0`` suffix; dtype: float32/float64, default the params' own dtype.
    config_changes: fields to override (e.g. batch_first=True), applied before building.
    """
    from .. import layers

    config = replace(config, **config_changes) if config_changes else config
    if dtype is None:
        dtype = np.result_type(*[np.asarray(v).dtype for v in params.values()]) if params else np.float32
        dtype = "float64" if np.dtype(dtype) == np.float64 else "float32"
    check_declared(config, params)
    try:
        checked = check_state_dict(config, params, dtype)  # clear ValueError on a missing key or wrong shape
    except ValueError as e:
        raise ValueError(short(e)) from None  # a file's key lists can be as long as the file
    if cell:
        if config.num_layers != 1 or config.bidirectional or config.proj_size:
            raise ValueError(f"cell: a {config.mode}Cell has one layer, one direction and no projection")
        layer = getattr(layers, config.mode + "Cell")(config.input_size, config.hidden_size, config.bias,
                                                     dtype=dtype)
        layer.params = {name[:-3]: value for name, value in checked.items()}
        return layer
    c = config
    layer = getattr(layers, c.mode)(c.input_size, c.hidden_size, c.num_layers, c.bias, c.batch_first, c.dropout,
                                    c.bidirectional, c.proj_size, dtype=dtype, **c.variant_options())
    layer.params = checked
    return layer


def check_declared(config: RNNConfig, params: dict) -> None:
    """Refuse a config that declares more layers than ``params`` could hold, before anything is built.

    Each layer and direction needs at least weight_ih and weight_hh, so a file's ``num_layers=10**7`` with a
    few tensors is refused here in O(1), instead of listing 10**7 layers' names and shapes first.
    """
    needed = 2 * config.num_layers * (2 if config.bidirectional else 1)
    if needed > len(params):
        raise ValueError(f"num_layers={config.num_layers}{' (bidirectional)' if config.bidirectional else ''} needs "
                         f"at least {needed} weight tensors, but {len(params)} are present")


def describe(model) -> str:
    """One line: kind, sizes and parameter count, for the CLI."""
    config, params, cell = unpack(model)
    kind = config.mode + ("Cell" if cell else "")
    fields = [f"input_size={config.input_size}", f"hidden_size={config.hidden_size}"]
    if not cell:
        fields += [f"num_layers={config.num_layers}", f"bidirectional={config.bidirectional}"]
        fields += [f"proj_size={config.proj_size}"] if config.proj_size else []
        fields += ["batch_first=True"] if config.batch_first else []
    fields += [] if config.bias else ["bias=False"]
    count = sum(v.size for v in params.values())
    return f"{kind}({', '.join(fields)}), {count:,} parameters"
