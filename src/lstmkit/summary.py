"""``lstmkit.summary(model)``: weight shapes and counts per layer, direction and gate; torch's and Keras' totals.

torch keeps two bias vectors per gate (bias_ih and bias_hh), Keras one for its LSTM, so LSTM(5 → 10)
has 680 parameters in torch and 640 in Keras. Keras' GRU (reset_after=True, torch's formulation) keeps
both biases, so its count equals torch's; with reset_after=False (linear_before_reset=False) it keeps one.
Keras has no projected LSTM and none of the other variant options (docs/variants.md) but forget_bias;
peephole and layer-norm parameters get rows of their own.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .params import GATES, RNNConfig, param_shapes, suffix


@dataclass
class Summary:
    """Rows (layer, direction, gate, weight_ih, weight_hh, biases, count) and the totals."""

    config: RNNConfig
    rows: list
    total: int
    keras_total: int | None

    def __str__(self) -> str:
        c = self.config
        header = ("layer", "direction", "gate", "weight_ih", "weight_hh", "bias_ih+bias_hh", "params")
        lines = [tuple(map(str, r)) for r in self.rows]
        widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        args = ", ".join(f"{k}={v}" for k, v in c.to_dict().items() if k != "mode")
        out = [f"{c.mode}({args})", f"gate order: {', '.join(GATES[c.mode])} (torch)", fmt.format(*header)]
        out += [fmt.format(*r) for r in lines]
        why = "Keras has no projected LSTM" if c.proj_size else "Keras has no such variant"
        keras = f"n/a ({why})" if self.keras_total is None else f"{self.keras_total:,}"
        one_bias = c.mode == "LSTM" or not c.linear_before_reset  # Keras' LSTM, and its GRU reset_after=False
        note = " (one bias vector per gate)" if one_bias and c.bias and self.keras_total else ""
        out.append(f"total parameters: {self.total:,} in torch, {keras} in Keras{note}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "rows": self.rows, "total": self.total,
                "keras_total": self.keras_total}


# Layers 1..N-1 have the same shapes, so a deeper stack is shown as layer 0 and one row group for the rest
LISTED_LAYERS = 1000


def summary(model) -> Summary:
    """Summarise an lstmkit layer or cell, an lstmkit.torch / torch.nn LSTM or GRU, or an RNNConfig.

    Counted from the shapes of layer 0 and layer 1 (every later layer is layer 1's shape), never by building
    the parameters, so any size is summarised in the time of a two-layer stack; past LISTED_LAYERS layers,
    layers 1..N-1 share one group of rows, each row per layer."""
    config = model if isinstance(model, RNNConfig) else config_of(model)
    N = config.num_layers
    shapes = param_shapes(dataclasses.replace(config, num_layers=min(N, 2)))  # layers 0 and 1 (if any)
    reverse_only = getattr(model, "reverse_only", False)  # io.onnx.ReverseRNN
    if N <= LISTED_LAYERS:
        rows = [r for layer in range(N) for r in _layer_rows(config, shapes, min(layer, 1), layer, reverse_only)]
    else:
        rest = f"1..{N - 1} (each)"
        rows = _layer_rows(config, shapes, 0, 0, reverse_only) + _layer_rows(config, shapes, 1, rest, reverse_only)
    total = _layer_count(shapes, 0) + (N - 1) * _layer_count(shapes, 1)
    keras_gru_variant = config.mode == "GRU" and dataclasses.replace(config, linear_before_reset=True).is_plain
    if config.proj_size or not (config.is_plain or keras_gru_variant):
        keras_total = None
    elif config.bias and (config.mode == "LSTM" or not config.linear_before_reset):
        # one bias per gate: Keras' LSTM, and its GRU with reset_after=False (torch's linear_before_reset=False)
        keras_total = total - N * config.num_directions * config.num_gates * config.hidden_size
    else:
        keras_total = total
    return Summary(config, rows, total, keras_total)


def _layer_count(shapes: dict, layer: int) -> int:
    """Parameters of one layer (both directions) among ``shapes`` (0 for a layer not there)."""
    return sum(math.prod(shape) for name, shape in shapes.items()
               if name.endswith((f"_l{layer}", f"_l{layer}_reverse")))


def _layer_rows(config: RNNConfig, shapes: dict, layer: int, label, reverse_only: bool) -> list:
    """The rows of layer ``layer``'s shapes (0, or 1 for any later one), shown as layer ``label``."""
    H = config.hidden_size
    rows = []
    for d in range(config.num_directions):
        s = suffix(layer, d)
        direction = "reverse" if d or reverse_only else "forward"
        ih, hh = shapes["weight_ih" + s], shapes["weight_hh" + s]
        for gate in GATES[config.mode]:
            n = H * ih[1] + H * hh[1] + (2 * H if config.bias else 0)
            bias = f"({H},)+({H},)" if config.bias else "-"
            rows.append((label, direction, gate, (H, ih[1]), (H, hh[1]), bias, n))
        if config.proj_size:
            hr = shapes["weight_hr" + s]
            rows.append((label, direction, "proj", f"weight_hr {hr}", "-", "-", math.prod(hr)))
        if config.peephole:
            rows.append((label, direction, "peephole", f"p_i, p_f, p_o {shapes['peephole' + s]}", "-", "-",
                         math.prod(shapes["peephole" + s])))
        if config.layer_norm:
            parts = [p for p in ("ih", "hh", "cell") if f"ln_{p}_weight{s}" in shapes]
            count = sum(2 * math.prod(shapes[f"ln_{p}_weight{s}"]) for p in parts)
            described = ", ".join(f"{p} {shapes[f'ln_{p}_weight{s}']}" for p in parts)
            rows.append((label, direction, "layer_norm", f"gain+shift: {described}", "-", "-", count))
    return rows


def config_of(model) -> RNNConfig:
    """The RNNConfig of an lstmkit layer/cell or of a torch-style module (reads torch.nn's attributes)."""
    if isinstance(getattr(model, "config", None), RNNConfig):
        return model.config
    name = type(model).__name__
    mode = "LSTM" if "LSTM" in name else "GRU" if "GRU" in name else None
    if mode is None or not hasattr(model, "hidden_size"):
        raise TypeError(f"model: expected an LSTM or GRU layer or cell, got {name}")
    return RNNConfig(
        mode, model.input_size, model.hidden_size, getattr(model, "num_layers", 1), model.bias,
        getattr(model, "batch_first", False), float(getattr(model, "dropout", 0.0)),
        getattr(model, "bidirectional", False), getattr(model, "proj_size", 0),
    )
