"""Drop-in replacements for torch.nn.LSTM, GRU, LSTMCell and GRUCell, computed by lstmkit's custom operators.

Same constructor, parameter names, initialisation (uniform ±1/√hidden_size, drawn in the same order, so
the same seed gives the same weights), ``state_dict`` keys and forward contract as torch.nn, so
``load_state_dict`` works in both directions. One extra: the sequence modules take ``lengths=`` (B,) for
padded input, with packed-sequence semantics (outputs past a sequence's end are zero, h_n/c_n are taken
at each sequence's last valid step, the reverse direction starts there).

Shapes (L layers, D = 2 if bidirectional else 1, H hidden_size, P = proj_size or H):
    input   (T, B, I), (B, T, I) with batch_first, (T, I) unbatched, or a PackedSequence
    hx      LSTM (h0 (L·D, B, P), c0 (L·D, B, H)); GRU h0 (L·D, B, H); without B when unbatched
    output  like the input with D·P features (a PackedSequence for a PackedSequence)
    h_n/c_n like h0/c0, batch in the caller's order (also for unsorted PackedSequences)
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .. import checks, engine
from ..errors import ShapeError, StateFormError
from ..params import GATES, RNNConfig, check_dtype, check_size, param_shapes, refuse_reshaping
from . import devices, ops  # ops registers torch.ops.lstmkit.*
from .ops import config_key

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell"]

_ENGINE_DTYPES = (torch.float32, torch.float64)


def _check_layer_dtype(dtype) -> None:
    """Only float32 and float64 are computed; a layer built or cast to another dtype fails by name."""
    check_dtype(checks.dtype_name(dtype))


def _refuse_script(module: nn.Module):
    """torch.jit.script calls this before compiling a module: lstmkit's modules call Python (checks, the
    operators' wrappers) that TorchScript cannot compile, so the refusal names what works instead."""
    raise RuntimeError(f"torch.jit.script: lstmkit.torch.{type(module).__name__} cannot be scripted (its forward "
                       "is Python around custom operators); use torch.compile, torch.export or torch.jit.trace, "
                       "which trace it")


def _bernoulli(like: torch.Tensor, shape: tuple, p: float) -> torch.Tensor:
    """A (shape) tensor of like's dtype and device: independent 1s (probability p) and 0s from torch's RNG,
    float64 uniform values below p. On the CPU these are the very draws of ``bernoulli_(p)`` (torch.nn's
    dropout: the same seed gives torch.nn's masks, in float32 and float64), made vectorised: CPU bernoulli_
    with a float p draws element by element, in the word-LM shape about an eighth of the layer's forward."""
    return torch.rand(shape, dtype=torch.float64, device=like.device).lt_(p).to(like.dtype)


class _RNNBase(nn.Module):
    """Shared body of LSTM and GRU: parameters under torch's names, validation, layouts, dropout masks."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, **variants) -> None:
        super().__init__()
        # RNNConfig validates sizes, flags, dropout, proj_size and the variant options (docs/variants.md),
        # naming the argument, with the exception types torch.nn raises (lstmkit.errors)
        self.config = c = RNNConfig(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                                    bidirectional, proj_size, **variants)
        self._config_key = config_key(self.config)
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = c.input_size, c.hidden_size, c.num_layers
        self.bias, self.batch_first, self.dropout = c.bias, c.batch_first, float(dropout)
        self.bidirectional, self.proj_size = c.bidirectional, c.proj_size
        if dropout > 0 and num_layers == 1:
            # the same warning torch.nn gives: dropout acts between layers only
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names = list(param_shapes(self.config))
        for name, shape in param_shapes(self.config).items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, **factory)))
        _check_layer_dtype(self.weight_ih_l0.dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's initialisation: every weight uniform in ±1/√hidden_size, in registration order (peepholes
        too); layer-norm gains 1 and shifts 0; with forget_bias the f rows of bias_ih set to it, of bias_hh to 0
        (as ``lstmkit.params.init_params``)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)  # hidden_size >= 1: RNNConfig checked it
        for name, weight in self.named_parameters():
            if name.startswith("ln_"):
                nn.init.constant_(weight, 1.0 if "_weight" in name else 0.0)
            else:
                nn.init.uniform_(weight, -stdv, stdv)
        if self.config.forget_bias and self.bias:
            H = self.hidden_size
            with torch.no_grad():
                for name, weight in self.named_parameters():
                    if name.startswith(("bias_ih", "bias_hh")):
                        weight[H:2 * H] = self.config.forget_bias if name.startswith("bias_ih") else 0.0

    # The config mirrors these attributes: assigned on a built module, batch_first and dropout take effect (torch.nn
    # reads them at every forward), the others are refused (RNNConfig.assigned).
    _MIRRORED = ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional", "proj_size")

    def __setattr__(self, name: str, value) -> None:
        config = self.__dict__.get("config")
        if config is not None and name in self._MIRRORED and name in self.__dict__:
            new = config.assigned(name, value, type(self).__name__)
            if new is not config:
                super().__setattr__("config", new)
                super().__setattr__("_config_key", config_key(new))
            value = float(new.dropout) if name == "dropout" else getattr(new, name)
        super().__setattr__(name, value)

    def __prepare_scriptable__(self):
        return _refuse_script(self)

    @property
    def _flat_weights(self) -> list[torch.Tensor]:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as torch.nn.RNNBase.all_weights."""
        per = len(self._flat_weights_names) // (self.num_layers * self.config.num_directions)
        w = self._flat_weights
        return [w[i:i + per] for i in range(0, len(w), per)]

    def flatten_parameters(self) -> None:
        """No-op, kept so code written for torch.nn (which calls it for cuDNN) runs unchanged."""

    def stream(self, batch=1):
        """Streaming inference, one time step per call on the native engine (``lstmkit.stream.Stream``
        over a copy of the current weights; step takes and returns tensors)."""
        from ..stream import Stream

        weights = {name: getattr(self, name).detach() for name in self._flat_weights_names}
        return Stream(self.config, weights, batch, torch_io=True)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        for name, value in self.config.variant_options().items():
            s += f", {name}={value!r}"
        return s

    # -- forward pieces ----------------------------------------------------------------------------------

    def _dropout_masks(self, steps: int, batch: int, like: torch.Tensor) -> list[torch.Tensor]:
        """L − 1 masks (T, B, D·P) drawn with torch's RNG, scaled by 1/(1 − p); [] when dropout is off.

        Drawn here rather than inside the operator so the forward and its backward use the same mask
        (the operator saves them) and torch.manual_seed makes runs reproducible.
        """
        p = self.dropout
        if not self.training or p == 0 or self.num_layers == 1:
            return []
        shape = (steps, batch, self.config.num_directions * self.config.output_size)
        if p >= 1.0:  # everything dropped; bernoulli/(1 − p) would be 0/0
            return [like.new_zeros(shape) for _ in range(self.num_layers - 1)]
        keep = 1.0 - p
        return [_bernoulli(like, shape, keep).div_(keep) for _ in range(self.num_layers - 1)]

    def _variant_masks(self, steps: int, batch: int, like: torch.Tensor) -> tuple[list, list, list]:
        """Training masks of the variants, drawn with torch's RNG (so torch.manual_seed reproduces them):
        recurrent dropout (B, P) Bernoulli(1 − p)/(1 − p) once per sequence, zoneout (T, B, H) / (T, B, P)
        Bernoulli(z), one per layer·direction; ([], [], []) in evaluation (zoneout by its expectation)."""
        c = self.config
        if not self.training:
            return [], [], []
        K, H, P = c.num_layers * c.num_directions, c.hidden_size, c.output_size
        p, (z_c, z_h) = c.recurrent_dropout, c.zoneout
        recurrent = [_bernoulli(like, (batch, P), 1.0 - p).div_(1.0 - p) for _ in range(K)] if p else []
        zoneout_c = [_bernoulli(like, (steps, batch, H), z_c) for _ in range(K)] if z_c else []
        zoneout_h = [_bernoulli(like, (steps, batch, P), z_h) for _ in range(K)] if z_h else []
        return recurrent, zoneout_c, zoneout_h

    def _lengths_tensor(self, lengths, steps: int, batch: int) -> torch.Tensor:
        """lengths= as an int64 tensor (B,). Values are checked here in eager mode; while compiling or
        exporting they are not readable (fake tensors), so the operator checks them when it runs."""
        if not torch.compiler.is_compiling():
            checks.check_lengths(lengths, steps, batch)
        if isinstance(lengths, torch.Tensor):
            checks.check_lengths_form(lengths, batch)
            return lengths.to(torch.int64)
        return torch.as_tensor(lengths, dtype=torch.int64)

    def _run(self, x, state0, lengths, masks):
        """Call the operator on sequence-first x (T, B, I); returns (output, state tuple)."""
        c = self.config
        T, B = x.shape[0], x.shape[1]
        variant_masks = self._variant_masks(T, B, x)
        weights = self._flat_weights  # read once: a parametrized weight (spectral_norm) is computed at each read
        if devices.elsewhere(x):  # not on the CPU, or ONNX export: torch's own kernels or equations.py
            return devices.sequence_forward(c, x, state0, weights, lengths, masks, variant_masks)
        # the training op (which saves the engine's workspace) only in training mode, so an eval-mode graph
        # (torch.export, tracing) holds the inference op; an eval-mode backward recomputes the forward.
        # TorchScript's ONNX exporter translates the inference op only.
        # torch.jit.trace records the training op in training mode whatever the grad mode: its own check traces
        # the module again under no_grad, and both traces must hold the same op.
        tracing = torch.jit.is_tracing() and engine.available()
        grad = self.training and not torch.onnx.is_in_onnx_export() and engine.supports(c) and \
            (tracing or ops.trains_natively(x, state0, weights))
        return ops.call(c, self._config_key, x, state0, weights, lengths, masks, variant_masks, train=grad)

    def _forward(self, input, hx, lengths):
        cfg = self.config
        dtype = self.weight_ih_l0.dtype
        _check_layer_dtype(dtype)
        input, hx = _from_autocast(input, dtype), _from_autocast(hx, dtype)
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths: not accepted with a PackedSequence input, which carries its own lengths")
            if torch.onnx.is_in_onnx_export():  # the exporter takes pack/pad pairs around torch.nn's RNNs only
                raise ValueError("input: a PackedSequence into lstmkit.torch's modules cannot be exported to ONNX "
                                 "(torch's exporter reads packing only around torch.nn's own RNNs); export the "
                                 "padded input with lengths= instead, which becomes the ONNX sequence_lens")
            if input.data.ndim != 2 or input.data.shape[-1] != cfg.input_size:
                raise ShapeError(f"input: expected PackedSequence data of shape (N, {cfg.input_size}), "
                                 f"got {tuple(input.data.shape)}")
            # padded (T, B, I) in the caller's batch order, lengths (B,), and where each packed row sits
            x, lengths_t, rows = _unpack(input)
            checks.check_dtype_matches("input", x.dtype, dtype)
            T, B, unbatched = x.shape[0], x.shape[1], False
        else:
            if not isinstance(input, torch.Tensor):  # the checks below take NumPy arrays too (the NumPy layers)
                raise TypeError(f"input: expected a tensor or a PackedSequence, got {type(input).__name__}")
            T, B, unbatched = checks.check_input(cfg, input, dtype)
            if unbatched:
                x = input.unsqueeze(1)
            elif cfg.batch_first:
                x = input.transpose(0, 1)
            else:
                x = input
            lengths_t = None if lengths is None else self._lengths_tensor(lengths, T, B)
        state0 = checks.check_state(cfg, hx, B, unbatched, dtype)
        if state0 is not None and not all(isinstance(s, torch.Tensor) for s in state0):
            raise StateFormError(f"hx: expected tensors, got {', '.join(type(s).__name__ for s in state0)}")
        if state0 is None:
            state0 = tuple(x.new_zeros(shape) for shape in checks.state_shapes(cfg, B))
        elif unbatched:
            state0 = tuple(s.unsqueeze(1) for s in state0)
        out, state = self._run(x, state0, lengths_t, self._dropout_masks(T, B, x))
        if packed:
            out = _pack_like(out, input, rows)
        elif unbatched:
            out = out.squeeze(1)
        elif cfg.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            state = tuple(s.squeeze(1) for s in state)
        return out, state


def _unpack(packed: PackedSequence):
    """PackedSequence -> (padded (T, B, F) in the caller's batch order, lengths (B,) int64, rows).

    Written with tensor ops of static shapes (T from len(batch_sizes), B from len(sorted_indices), N from
    the data) instead of pad_packed_sequence, which torch.compile refuses to trace. ``rows`` = (t, j): packed
    row n holds step t[n] of the j[n]-th longest sequence; ``_pack_like`` uses it to pack the output the
    same way. Without sorted_indices (packed with enforce_sorted=True) B is batch_sizes[0], a value, which
    torch.compile(fullgraph=True) cannot read; such input works in eager mode only.
    """
    data, batch_sizes = packed.data, packed.batch_sizes
    if packed.sorted_indices is None and torch.compiler.is_compiling():
        raise ValueError("input: a PackedSequence packed with enforce_sorted=True holds its batch size as a value, "
                         "which torch.compile cannot trace; pack it with enforce_sorted=False (the same sequences, "
                         "in any order) to compile the module")
    steps = batch_sizes.shape[0]
    batch = packed.sorted_indices.shape[0] if packed.sorted_indices is not None else int(batch_sizes[0])
    device = data.device
    sizes = batch_sizes.to(device)
    t = torch.repeat_interleave(torch.arange(steps, device=device), sizes, output_size=data.shape[0])
    starts = torch.cumsum(sizes, 0) - sizes  # first packed row of each step
    j = torch.arange(data.shape[0], device=device) - starts[t]
    padded = data.new_zeros((steps, batch, data.shape[-1])).index_put((t, j), data)
    # sequence j (in sorted order) runs for as many steps as have more than j sequences
    lengths = (torch.arange(batch)[None, :] < batch_sizes[:, None]).sum(0)
    if packed.unsorted_indices is not None:
        padded = padded.index_select(1, packed.unsorted_indices)
        lengths = lengths.index_select(0, packed.unsorted_indices.cpu())
    return padded, lengths, (t, j)


def _pack_like(output: torch.Tensor, packed_input: PackedSequence, rows) -> PackedSequence:
    """Pack output (T, B, F), in the caller's batch order, exactly as ``packed_input`` is packed: same
    batch_sizes, sorted_indices and unsorted_indices (torch.nn returns them unchanged)."""
    if packed_input.sorted_indices is not None:
        output = output.index_select(1, packed_input.sorted_indices)
    data = output[rows]  # (N, F)
    return PackedSequence(data, packed_input.batch_sizes, packed_input.sorted_indices, packed_input.unsorted_indices)


class LSTM(_RNNBase):
    """Multi-layer (bi)directional LSTM with optional projection; drop-in for torch.nn.LSTM.

    Args as torch.nn.LSTM: input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0 (between layers, training mode only), bidirectional=False, proj_size=0, device, dtype
    (float32 or float64). Variants (docs/variants.md, keyword-only): peephole, input_forget, clip,
    activations, layer_norm, zoneout=(z_c, z_h), recurrent_dropout, forget_bias; their extra parameters
    are registered as peephole_l{k}, ln_ih_weight_l{k}, ... (state_dict names as lstmkit.params).

    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))``
        input (T, B, I) / (B, T, I) with batch_first / unbatched (T, I) / PackedSequence;
        hx = (h0 (L·D, B, P), c0 (L·D, B, H)) or None for zeros (no B dimension when unbatched);
        lengths (B,) ints in [0, T] for padded input (not with a PackedSequence).
        output (T, B, D·P) (batch_first: (B, T, D·P); unbatched (T, D·P); PackedSequence in, out);
        h_n (L·D, B, P), c_n (L·D, B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, peephole: bool = False, input_forget: bool = False, clip=None,
                 activations=None, layer_norm: bool = False, zoneout=(0.0, 0.0), recurrent_dropout: float = 0.0,
                 forget_bias: float = 0.0) -> None:
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device=device, dtype=dtype, peephole=peephole, input_forget=input_forget,
                         clip=clip, activations=activations, layer_norm=layer_norm, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout, forget_bias=forget_bias)

    # lengths is positional-or-keyword, not keyword-only: torch.onnx.export(dynamo=False) passes every parameter
    # with a default positionally (torch.onnx.utils._decide_input_format), which broke the export of a bare module.
    def forward(self, input, hx=None, lengths=None):
        out, (h_n, c_n) = self._forward(input, hx, lengths)
        return out, (h_n, c_n)


class GRU(_RNNBase):
    """Multi-layer (bi)directional GRU; drop-in for torch.nn.GRU.

    Args as torch.nn.GRU: input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device, dtype (float32 or float64). Variants (keyword-only):
    clip, activations, layer_norm, zoneout=(0.0, z_h), recurrent_dropout, linear_before_reset.

    ``forward(input, hx=None, lengths=None) -> (output, h_n)``
        input as for LSTM; hx h0 (L·D, B, H) or None; output (T, B, D·H) (layouts as the input);
        h_n (L·D, B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, clip=None, activations=None, layer_norm: bool = False,
                 zoneout=(0.0, 0.0), recurrent_dropout: float = 0.0, linear_before_reset: bool = True,
                 proj_size=None) -> None:
        if proj_size is not None:  # torch.nn.GRU refuses the keyword with a ValueError, even proj_size=0
            raise ValueError(f"proj_size: only LSTM supports a projection, got proj_size={proj_size!r} for GRU")
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         0, device=device, dtype=dtype, clip=clip, activations=activations, layer_norm=layer_norm,
                         zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                         linear_before_reset=linear_before_reset)

    def forward(self, input, hx=None, lengths=None):
        out, (h_n,) = self._forward(input, hx, lengths)
        return out, h_n


# ----------------------------------------------------------------------------------------------------------
# Cells: one step, through the sequence operators with T = 1 and one layer.
# ----------------------------------------------------------------------------------------------------------

def _from_autocast(value, dtype):
    """Under autocast, a tensor (or PackedSequence, or tuple of them) in autocast's lower precision — what an
    autocast op in front of this module returns (a Linear's bfloat16 output) — read in the module's float32, as
    torch.nn's modules take it there (gradients flow back in its dtype); outside autocast such a tensor meets the
    dtype checks, as in torch.nn."""
    if isinstance(value, PackedSequence):  # a tuple too: first
        data = _from_autocast(value.data, dtype)
        return value if data is value.data else PackedSequence(data, value.batch_sizes, value.sorted_indices,
                                                               value.unsorted_indices)
    if isinstance(value, (tuple, list)):
        return type(value)(_from_autocast(v, dtype) for v in value)
    if (isinstance(value, torch.Tensor) and dtype == torch.float32 and value.dtype != dtype
            and torch.is_autocast_enabled(value.device.type)
            and value.dtype == torch.get_autocast_dtype(value.device.type)):
        return value.float()
    return value


def _check_cell_input(cell, x, dtype) -> tuple[int, bool]:
    """Cell input (B, I) or unbatched (I,); returns (B, unbatched). (checks.check_input expects sequences.)"""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input: expected a tensor of shape (B, {cell.input_size}), got {type(x).__name__}")
    if x.ndim not in (1, 2):
        raise ValueError(f"input: expected 2 dimensions (B, I) or 1 (I,) for a cell, got shape {tuple(x.shape)}")
    if x.shape[-1] != cell.input_size:
        raise ShapeError(
            f"input: expected {cell.input_size} features in the last dimension, got shape {tuple(x.shape)}")
    checks.check_dtype_matches("input", x.dtype, dtype)
    return (1, True) if x.ndim == 1 else (x.shape[0], False)


def _check_cell_state(cell, hx, batch: int, unbatched: bool, dtype) -> tuple | None:
    """Cell state: LSTM (h, c), GRU h; each (B, H), or (H,) unbatched. Returns a tuple or None."""
    if hx is None:
        return None
    if cell.mode == "LSTM":
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            got = f"a {type(hx).__name__} of {len(hx)}" if isinstance(hx, (tuple, list)) else type(hx).__name__
            raise StateFormError(f"hx: expected a tuple (h, c) for an LSTMCell, got {got}")
        names, hx = ("h", "c"), tuple(hx)
    else:
        if isinstance(hx, (tuple, list)):
            raise StateFormError("hx: expected one tensor h for a GRUCell, got a tuple")
        names, hx = ("h",), (hx,)
    shape = (cell.hidden_size,) if unbatched else (batch, cell.hidden_size)
    for name, value in zip(names, hx):
        if not isinstance(value, torch.Tensor):
            raise StateFormError(f"hx: expected {name} as a tensor of shape {shape}, got {type(value).__name__}")
        if tuple(value.shape) != shape:
            raise ShapeError(f"hx: expected {name} of shape {shape}, got {tuple(value.shape)}")
        checks.check_dtype_matches(f"hx ({name})", value.dtype, dtype)
    return hx


class _CellBase(nn.Module):
    def __init__(self, mode: str, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__()
        # as torch.nn's cells: sizes >= 0 (a negative one is torch's RuntimeError) and any truthy bias
        self.mode = mode
        self.input_size = check_size("input_size", input_size, 0, below=ShapeError)
        self.hidden_size = check_size("hidden_size", hidden_size, 0, below=ShapeError)
        self.bias = bool(bias)
        # the operators compute sizes >= 1; a zero size is computed by _step's exact shortcuts and has no config
        self.config = RNNConfig(mode, input_size, hidden_size, 1, self.bias) if input_size and hidden_size else None
        self._set_step_config()
        factory = {"device": device, "dtype": dtype}
        G = len(GATES[mode])
        self.weight_ih = nn.Parameter(torch.empty((G * hidden_size, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((G * hidden_size, hidden_size), **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(G * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(G * hidden_size, **factory))
        else:  # as torch.nn: registered as None, so absent from state_dict
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        _check_layer_dtype(self.weight_ih.dtype)
        self.reset_parameters()

    _FIXED = ("mode", "input_size", "hidden_size", "bias")

    def __setattr__(self, name: str, value) -> None:
        if "_config_key" in self.__dict__ and name in self._FIXED:  # built
            refuse_reshaping(name, self.__dict__[name], value, type(self).__name__)
        super().__setattr__(name, value)

    def __prepare_scriptable__(self):
        return _refuse_script(self)

    def _set_step_config(self) -> None:
        # what rnn_step computes: with no inputs, one zero feature (see _step); kept here because torch.compile
        # cannot trace the JSON encoding of a config
        H = self.hidden_size
        self._step_config = RNNConfig(self.mode, max(self.input_size, 1), H, 1, self.bias) if H else None
        self._config_key = config_key(self._step_config) if H else None

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if "_step_config" not in state:  # a cell pickled by an lstmkit without rnn_step
            self._set_step_config()

    def reset_parameters(self) -> None:
        """torch's initialisation: every parameter uniform in ±1/√hidden_size (all empty when hidden_size = 0)."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _eager_step(self, input, hx) -> tuple | None:
        """The common call — batched, hx None or of the expected type, shape and dtype — through
        ``ops.eager_cell_step`` (None there, or for any other call: the general path of ``_step``)."""
        dtype = self.weight_ih.dtype
        if (self.config is None or not engine.available() or torch.jit.is_tracing()
                or type(input) is not torch.Tensor or input.dim() != 2 or input.shape[1] != self.input_size
                or input.dtype != dtype or dtype not in _ENGINE_DTYPES):
            return None
        B, H = input.shape[0], self.hidden_size
        n = 2 if self.mode == "LSTM" else 1
        if hx is None:
            state = (torch.zeros((B, H), dtype=dtype),) * n
        else:
            state = tuple(hx) if n == 2 and type(hx) in (tuple, list) else (hx,)
            if len(state) != n or any(type(s) is not torch.Tensor or s.shape != (B, H) or s.dtype != dtype
                                      for s in state):
                return None
        params = [self.weight_ih, self.weight_hh] + ([self.bias_ih, self.bias_hh] if self.bias else [])
        return ops.eager_cell_step(self.config, input, state, params) if B else None

    def _step(self, input, hx):
        new = self._eager_step(input, hx)
        if new is not None:
            return new
        dtype = self.weight_ih.dtype
        _check_layer_dtype(dtype)
        input, hx = _from_autocast(input, dtype), _from_autocast(hx, dtype)
        B, unbatched = _check_cell_input(self, input, dtype)
        state = _check_cell_state(self, hx, B, unbatched, dtype)
        H = self.hidden_size
        x = input.reshape(1, B, self.input_size)  # one step of one sequence batch
        if state is None:
            state = tuple(x.new_zeros((1, B, H)) for _ in range(2 if self.mode == "LSTM" else 1))
        else:
            state = tuple(s.reshape(1, B, H) for s in state)
        weights = [self.weight_ih, self.weight_hh] + ([self.bias_ih, self.bias_hh] if self.bias else [])
        shape = (H,) if unbatched else (B, H)
        # Not on the CPU, or ONNX export, or no units (every output empty, each input and weight still given an
        # empty gradient, as torch.nn's cells do): torch's own cell kernels (any size; reads .mode)
        if H == 0 or devices.elsewhere(x):
            new = devices.cell_forward(self, x[0], tuple(s[0] for s in state), weights)
            return tuple(s.reshape(shape) for s in new)
        if self.input_size == 0:  # no inputs: one zero feature with a zero weight column adds exactly 0
            x, weights = F.pad(x, (0, 1)), [F.pad(self.weight_ih, (0, 1))] + weights[1:]
        return tuple(s.reshape(shape) for s in ops.step(self._step_config, self._config_key, x[0], state, weights))


class LSTMCell(_CellBase):
    """One LSTM step; drop-in for torch.nn.LSTMCell(input_size, hidden_size, bias=True, device, dtype).

    ``forward(input, hx=None) -> (h', c')``: input (B, I) or (I,); hx = (h (B, H), c (B, H)) or None
    for zeros (no B when unbatched); h', c' (B, H) or (H,).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        h, c = self._step(input, hx)
        return h, c


class GRUCell(_CellBase):
    """One GRU step; drop-in for torch.nn.GRUCell(input_size, hidden_size, bias=True, device, dtype).

    ``forward(input, hx=None) -> h'``: input (B, I) or (I,); hx h (B, H) or None; h' (B, H) or (H,).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        (h,) = self._step(input, hx)
        return h
