"""``lstmkit.summary(model)``: weight shapes and counts per layer, direction and gate; torch's and Keras' totals.

torch keeps two bias vectors per gate (bias_ih and bias_hh), Keras one for its LSTM, so LSTM(5 → 10)
has 680 parameters in torch and 640 in Keras. Keras' GRU (reset_after=True, torch's formulation) keeps
both biases, so its count equals torch's. Keras has no projected LSTM and none of the variant options
(docs/variants.md) but forget_bias; peephole and layer-norm parameters get rows of their own.
"""
from __future__ import annotations

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
        note = " (one bias vector per gate)" if c.mode == "LSTM" and c.bias and self.keras_total else ""
        out.append(f"total parameters: {self.total:,} in torch, {keras} in Keras{note}")
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "rows": self.rows, "total": self.total,
                "keras_total": self.keras_total}


def summary(model) -> Summary:
    """Summarise an lstmkit layer or cell, an lstmkit.torch / torch.nn LSTM or GRU, or an RNNConfig."""
    config = model if isinstance(model, RNNConfig) else config_of(model)
    shapes = param_shapes(config)
    G, H = config.num_gates, config.hidden_size
    rows = []
    for layer in range(config.num_layers):
        for d in range(config.num_directions):
            s = suffix(layer, d)
            direction = "reverse" if d or getattr(model, "reverse_only", False) else "forward"  # io.onnx.ReverseRNN
            ih, hh = shapes["weight_ih" + s], shapes["weight_hh" + s]
            for gate in GATES[config.mode]:
                n = H * ih[1] + H * hh[1] + (2 * H if config.bias else 0)
                bias = f"({H},)+({H},)" if config.bias else "-"
                rows.append((layer, direction, gate, (H, ih[1]), (H, hh[1]), bias, n))
            if config.proj_size:
                hr = shapes["weight_hr" + s]
                rows.append((layer, direction, "proj", f"weight_hr {hr}", "-", "-", math.prod(hr)))
            if config.peephole:
                rows.append((layer, direction, "peephole", f"p_i, p_f, p_o {shapes['peephole' + s]}", "-", "-",
                             math.prod(shapes["peephole" + s])))
            if config.layer_norm:
                parts = [p for p in ("ih", "hh", "cell") if f"ln_{p}_weight{s}" in shapes]
                count = sum(2 * math.prod(shapes[f"ln_{p}_weight{s}"]) for p in parts)
                described = ", ".join(f"{p} {shapes[f'ln_{p}_weight{s}']}" for p in parts)
                rows.append((layer, direction, "layer_norm", f"gain+shift: {described}", "-", "-", count))
    total = sum(math.prod(s) for s in shapes.values())
    if config.proj_size or not config.is_plain:
        keras_total = None
    elif config.mode == "LSTM" and config.bias:
        keras_total = total - sum(G * H for name in shapes if name.startswith("bias_hh"))
    else:
        keras_total = total
    return Summary(config, rows, total, keras_total)


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
