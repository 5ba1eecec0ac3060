"""lstmkit's RNNs as registered torch custom operators, with autograd, fake (meta) kernels and validation.

Three operators are registered under the ``lstmkit`` namespace:

``torch.ops.lstmkit.lstm(x, h0, c0, params, lengths, dropout_masks, input_size, hidden_size, num_layers,
bias, bidirectional, proj_size) -> (output, h_n, c_n)``
    x (T, B, I), sequence-first; h0 (L·D, B, P); c0 (L·D, B, H); params the weights in
    ``lstmkit.params.param_shapes`` order (torch's order); lengths None or (B,) int64 in [0, T], any order;
    dropout_masks [] or L − 1 tensors (T, B, D·P) already scaled by 1/(1 − p).
    Returns output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H).
``torch.ops.lstmkit.gru(x, h0, params, lengths, dropout_masks, input_size, hidden_size, num_layers, bias,
bidirectional) -> (output, h_n)``
    The same for the GRU (no c, no projection): output (T, B, D·H), h_n (L·D, B, H).
``torch.ops.lstmkit.rnn_backward(...) -> list[Tensor]``
    The backward of both: [dx, dh0, (dc0 for LSTM), *dparams]. It is an operator of its own (not plain
    Python inside the autograd formula) so that torch.compile and torch.export can trace the backward
    graph with fake tensors and call the real computation only at run time.

For training on the native engine (what the modules use when a gradient is needed and there are no
dropout masks), two more operators save the engine's workspace instead of recomputing the forward:

``torch.ops.lstmkit.lstm_train(x, h0, c0, params, lengths, input_size, hidden_size, num_layers, bias,
bidirectional, proj_size) -> (output, h_n, c_n, workspace)``, ``torch.ops.lstmkit.gru_train(...) ->
(output, h_n, workspace)``
    As ``lstm`` / ``gru`` without dropout masks, plus workspace (1-D, ``lstmkit.engine.workspace_size``
    values: the gate activations and states of every step), which autograd saves and
    ``torch.ops.lstmkit.rnn_backward_saved`` reads. The workspace is not differentiable.

The computation is lstmkit's native engine (``lstmkit.engine``) when it is built, else the NumPy
reference (``lstmkit.ref.rnn``); with inter-layer dropout masks the engine runs one layer at a time
(``lstmkit.engine.layered_train_forward``; the modules call ``lstm_train`` / ``gru_train`` per layer instead).
The operators take CPU tensors only (another device is refused by name, never copied to the CPU and
back; the modules dispatch other devices to torch's kernels, ``lstmkit.torch.devices``); tensors go to
NumPy with ``.detach().numpy()`` and come back with ``torch.from_numpy``, in the input's dtype (float32 or
float64). The backward of ``lstm`` / ``gru``
**recomputes the forward** (natively, or the reference's to rebuild its per-step cache): only the
inputs are saved, at the cost of one extra forward per backward; ``lstm_train`` / ``gru_train`` save
the workspace instead and their backward is the backward alone.
Double backward (grad of grad): a backward run with ``create_graph=True`` differentiates
``lstmkit.torch.equations`` (the same function in torch ops) instead of calling the backward operators
(``graph_gradients``), so its result is differentiable again.

Inputs are validated with ``lstmkit.checks`` in both the real and the fake kernel, so calling an operator
directly with a bad argument raises the same ValueError/TypeError, naming the argument, as the modules do.
"""
from typing import Callable, Optional

import numpy as np
import torch

from .. import checks, engine
from ..params import RNNConfig, check_dtype, param_shapes
from ..ref import rnn as ref_rnn

__all__ = ["lstm", "gru", "lstm_train", "gru_train", "rnn_backward", "rnn_backward_saved", "make_config",
           "select_forward", "trains_natively", "graph_gradients"]

Tensor = torch.Tensor


def make_config(mode: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                bidirectional: bool, proj_size: int = 0) -> RNNConfig:
    """The RNNConfig an operator call describes (the layout is always sequence-first, no dropout rate:
    the masks carry dropout)."""
    return RNNConfig(mode, int(input_size), int(hidden_size), int(num_layers), bool(bias),
                     batch_first=False, dropout=0.0, bidirectional=bool(bidirectional), proj_size=int(proj_size))


# ----------------------------------------------------------------------------------------------------------
# The one switch point for the forward computation.
# ----------------------------------------------------------------------------------------------------------

def _reference_forward(config, params, x, state0, lengths, dropout_masks):
    output, final_state, _cache = ref_rnn.forward(config, params, x, state0, lengths, dropout_masks)
    return output, final_state


def _engine_forward(config, params, x, state0, lengths, dropout_masks):
    if dropout_masks:  # one layer at a time, the masks between (no tape: the backward recomputes)
        output, final_state, _ = engine.layered_train_forward(config, params, x, state0, lengths, dropout_masks,
                                                              keep_tape=False)
        return output, final_state
    return engine.forward(config, params, x, state0, lengths)


def select_forward(training: bool) -> Callable:
    """The forward implementation for one call: ``f(config, params, x, state0, lengths, dropout_masks)
    -> (output, final_state)`` with the reference's semantics.

    This is the single place that chooses it: the native engine when it is built (with dropout masks,
    ``training``, one layer at a time: ``engine.layered_train_forward``), else the reference.
    """
    if engine.available():
        return _engine_forward
    return _reference_forward


# ----------------------------------------------------------------------------------------------------------
# Validation, shared by the real and the fake kernels (shapes and dtypes only, plus lengths' values
# when they are real).
# ----------------------------------------------------------------------------------------------------------

def _check_args(config: RNNConfig, x, h0, c0, params, lengths, dropout_masks) -> tuple[int, int]:
    """Validate an operator call; returns (T, B). x must be 3-D (T, B, I): the modules handle layouts."""
    dtype = x.dtype if hasattr(x, "dtype") else None
    if hasattr(x, "ndim") and x.ndim != 3:
        raise ValueError(f"input: expected 3 dimensions (T, B, I) for the operator, got shape {tuple(x.shape)}")
    T, B, _ = checks.check_input(config, x, dtype)
    check_dtype(checks.dtype_name(dtype))  # float32 or float64 only, else TypeError naming dtype
    hx = (h0, c0) if config.mode == "LSTM" else h0
    checks.check_state(config, hx, B, False, dtype)
    shapes = param_shapes(config)
    if len(params) != len(shapes):
        raise ValueError(f"params: expected {len(shapes)} tensors ({', '.join(shapes)}), got {len(params)}")
    for (name, shape), p in zip(shapes.items(), params):
        if tuple(p.shape) != shape:
            raise ValueError(f"params ({name}): expected shape {shape}, got {tuple(p.shape)}")
        checks.check_dtype_matches(f"params ({name})", p.dtype, dtype)
    if lengths is not None:
        checks.check_lengths_form(lengths, B)
    expected = config.num_layers - 1
    if len(dropout_masks) not in (0, expected):
        raise ValueError(f"dropout_masks: expected 0 or {expected} masks (one per layer but the last), "
                         f"got {len(dropout_masks)}")
    mask_shape = (T, B, config.num_directions * config.output_size)
    for k, m in enumerate(dropout_masks):
        if tuple(m.shape) != mask_shape:
            raise ValueError(f"dropout_masks[{k}]: expected shape {mask_shape}, got {tuple(m.shape)}")
        checks.check_dtype_matches(f"dropout_masks[{k}]", m.dtype, dtype)
    return T, B


def _np(t: Optional[Tensor]):
    return None if t is None else t.detach().cpu().numpy()


def _to_torch(a: np.ndarray, like: Tensor) -> Tensor:
    # A fresh C-contiguous copy: a custom op's outputs may not alias its inputs, and the fake kernels
    # promise contiguous outputs, so strides agree between tracing and running.
    return torch.from_numpy(np.array(a, dtype=a.dtype, order="C", copy=True)).to(like.device)


def _check_cpu(x) -> None:
    """lstmkit's kernels run on the CPU; a tensor elsewhere is refused, never silently copied there and back
    (the modules compute non-CPU tensors with torch's own kernels: lstmkit.torch.devices)."""
    if x.device.type != "cpu":
        raise ValueError(f"input: lstmkit's operators run on CPU tensors, got one on {x.device}; the modules "
                         "(lstmkit.torch.LSTM/GRU/...) compute it with torch's kernels there")


def _numpy_args(config, x, h0, c0, params, lengths, dropout_masks):
    """Real-kernel arguments as the reference takes them (lengths' values checked here, where they are real)."""
    _check_cpu(x)
    T, B = _check_args(config, x, h0, c0, params, lengths, dropout_masks)
    lengths_np = None if lengths is None else checks.check_lengths(_np(lengths), T, B)
    params_np = dict(zip(param_shapes(config), (_np(p) for p in params)))
    state0 = (_np(h0), _np(c0)) if config.mode == "LSTM" else (_np(h0),)
    masks = [_np(m) for m in dropout_masks] if dropout_masks else None
    return params_np, _np(x), state0, lengths_np, masks


def _run_forward(config, x, h0, c0, params, lengths, dropout_masks):
    params_np, x_np, state0, lengths_np, masks = _numpy_args(config, x, h0, c0, params, lengths, dropout_masks)
    forward = select_forward(training=masks is not None)
    output, final_state = forward(config, params_np, x_np, state0, lengths_np, masks)
    return (_to_torch(output, x),) + tuple(_to_torch(s, x) for s in final_state)


def _fake_forward(config, x, h0, c0, params, lengths, dropout_masks):
    T, B = _check_args(config, x, h0, c0, params, lengths, dropout_masks)
    k, D = config.num_layers * config.num_directions, config.num_directions
    output = x.new_empty((T, B, D * config.output_size))
    h_n = x.new_empty((k, B, config.output_size))
    if config.mode == "LSTM":
        return output, h_n, x.new_empty((k, B, config.hidden_size))
    return output, h_n


# ----------------------------------------------------------------------------------------------------------
# Forward operators
# ----------------------------------------------------------------------------------------------------------

@torch.library.custom_op("lstmkit::lstm", mutates_args=())
def lstm(x: Tensor, h0: Tensor, c0: Tensor, params: list[Tensor], lengths: Optional[Tensor],
         dropout_masks: list[Tensor], input_size: int, hidden_size: int, num_layers: int, bias: bool,
         bidirectional: bool, proj_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Stacked (bi)directional LSTM over x (T, B, I) -> (output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H))."""
    config = make_config("LSTM", input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _run_forward(config, x, h0, c0, params, lengths, dropout_masks)


@lstm.register_fake
def _lstm_fake(x, h0, c0, params, lengths, dropout_masks, input_size, hidden_size, num_layers, bias,
               bidirectional, proj_size):
    config = make_config("LSTM", input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _fake_forward(config, x, h0, c0, params, lengths, dropout_masks)


@torch.library.custom_op("lstmkit::gru", mutates_args=())
def gru(x: Tensor, h0: Tensor, params: list[Tensor], lengths: Optional[Tensor], dropout_masks: list[Tensor],
        input_size: int, hidden_size: int, num_layers: int, bias: bool, bidirectional: bool) -> tuple[Tensor, Tensor]:
    """Stacked (bi)directional GRU over x (T, B, I) -> (output (T, B, D·H), h_n (L·D, B, H))."""
    config = make_config("GRU", input_size, hidden_size, num_layers, bias, bidirectional)
    return _run_forward(config, x, h0, None, params, lengths, dropout_masks)


@gru.register_fake
def _gru_fake(x, h0, params, lengths, dropout_masks, input_size, hidden_size, num_layers, bias, bidirectional):
    config = make_config("GRU", input_size, hidden_size, num_layers, bias, bidirectional)
    return _fake_forward(config, x, h0, None, params, lengths, dropout_masks)


# ----------------------------------------------------------------------------------------------------------
# Backward operator
# ----------------------------------------------------------------------------------------------------------

def trains_natively(x: Tensor, state0, params, dropout_masks) -> bool:
    """Whether a call should go through ``lstm_train`` / ``gru_train``: the engine is built, there are no
    dropout masks, and autograd will want a gradient of something."""
    if dropout_masks or not engine.available() or not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (x, *state0, *params))


def _fake_workspace(config, x):
    return x.new_empty((engine.workspace_size(config, x.shape[0], x.shape[1]),))


def _run_train_forward(config, x, h0, c0, params, lengths):
    params_np, x_np, state0, lengths_np, _ = _numpy_args(config, x, h0, c0, params, lengths, [])
    output, final_state, workspace = engine.train_forward(config, params_np, x_np, state0, lengths_np)
    return (_to_torch(output, x), *(_to_torch(s, x) for s in final_state), torch.from_numpy(workspace).to(x.device))


@torch.library.custom_op("lstmkit::lstm_train", mutates_args=())
def lstm_train(x: Tensor, h0: Tensor, c0: Tensor, params: list[Tensor], lengths: Optional[Tensor], input_size: int,
               hidden_size: int, num_layers: int, bias: bool, bidirectional: bool,
               proj_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``lstm`` without dropout masks, for training natively -> (output, h_n, c_n, workspace)."""
    config = make_config("LSTM", input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _run_train_forward(config, x, h0, c0, params, lengths)


@lstm_train.register_fake
def _lstm_train_fake(x, h0, c0, params, lengths, input_size, hidden_size, num_layers, bias, bidirectional,
                     proj_size):
    config = make_config("LSTM", input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return (*_fake_forward(config, x, h0, c0, params, lengths, []), _fake_workspace(config, x))


@torch.library.custom_op("lstmkit::gru_train", mutates_args=())
def gru_train(x: Tensor, h0: Tensor, params: list[Tensor], lengths: Optional[Tensor], input_size: int,
              hidden_size: int, num_layers: int, bias: bool, bidirectional: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``gru`` without dropout masks, for training natively -> (output, h_n, workspace)."""
    config = make_config("GRU", input_size, hidden_size, num_layers, bias, bidirectional)
    return _run_train_forward(config, x, h0, None, params, lengths)


@gru_train.register_fake
def _gru_train_fake(x, h0, params, lengths, input_size, hidden_size, num_layers, bias, bidirectional):
    config = make_config("GRU", input_size, hidden_size, num_layers, bias, bidirectional)
    return (*_fake_forward(config, x, h0, None, params, lengths, []), _fake_workspace(config, x))


def _gradients(mode, x, h0, c0, params, lengths, dropout_masks, grad_output, grad_h_n, grad_c_n, config_args,
               workspace):
    """The real backward of both backward operators: [dx, dh0, (dc0), *dparams] as tensors.

    workspace: the engine's saved workspace (native, no dropout), or None to recompute the forward.
    """
    config = make_config(mode, *config_args)
    params_np, x_np, state0, lengths_np, masks = _numpy_args(config, x, h0, c0, params, lengths, dropout_masks)
    shapes = checks.state_shapes(config, x_np.shape[1])
    d_output_shape = x_np.shape[:2] + (config.num_directions * config.output_size,)
    d_output = np.zeros(d_output_shape, x_np.dtype) if grad_output is None else _np(grad_output)
    grads_final = (grad_h_n, grad_c_n) if mode == "LSTM" else (grad_h_n,)
    d_final = tuple(np.zeros(s, x_np.dtype) if g is None else _np(g) for s, g in zip(shapes, grads_final))
    if masks is None and engine.available():  # without a workspace the engine recomputes its forward natively
        dx, d_state0, grads = engine.backward(config, params_np, x_np, d_output, d_final, state0, lengths_np,
                                              workspace=_np(workspace))
    elif engine.available():  # inter-layer dropout: the forward recomputed natively, layer by layer
        _, _, tape = engine.layered_train_forward(config, params_np, x_np, state0, lengths_np, masks)
        dx, d_state0, grads = engine.layered_backward(tape, d_output, d_final)
    else:
        _, _, cache = ref_rnn.forward(config, params_np, x_np, state0, lengths_np, masks)
        dx, d_state0, grads = ref_rnn.backward(cache, d_output, d_final)
    dtype = x_np.dtype
    result = [dx, *d_state0, *(grads[name] for name in param_shapes(config))]
    return [_to_torch(np.asarray(g, dtype=dtype), x) for g in result]


def _fake_gradients(mode, x, h0, c0, params, lengths, dropout_masks, config_args):
    config = make_config(mode, *config_args)
    _check_args(config, x, h0, c0, params, lengths, dropout_masks)
    states = (h0, c0) if mode == "LSTM" else (h0,)
    # contiguous like the real kernel's results (empty_like would copy the strides of, e.g., a transposed x)
    return [x.new_empty(x.shape), *(s.new_empty(s.shape) for s in states), *(p.new_empty(p.shape) for p in params)]


@torch.library.custom_op("lstmkit::rnn_backward", mutates_args=())
def rnn_backward(mode: str, x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor],
                 lengths: Optional[Tensor], dropout_masks: list[Tensor], grad_output: Optional[Tensor],
                 grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor], input_size: int, hidden_size: int,
                 num_layers: int, bias: bool, bidirectional: bool, proj_size: int) -> list[Tensor]:
    """Gradients of ``lstm``/``gru`` -> [dx (T, B, I), dh0, (dc0), *dparams in param_shapes order].

    A None gradient stands for an output that was not used (zeros). Recomputes the forward (natively, or the
    reference's to rebuild its cache; see the module docstring).
    """
    config_args = (input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _gradients(mode, x, h0, c0, params, lengths, dropout_masks, grad_output, grad_h_n, grad_c_n, config_args,
                      None)


@rnn_backward.register_fake
def _rnn_backward_fake(mode, x, h0, c0, params, lengths, dropout_masks, grad_output, grad_h_n, grad_c_n,
                       input_size, hidden_size, num_layers, bias, bidirectional, proj_size):
    config_args = (input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _fake_gradients(mode, x, h0, c0, params, lengths, dropout_masks, config_args)


@torch.library.custom_op("lstmkit::rnn_backward_saved", mutates_args=())
def rnn_backward_saved(mode: str, x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor],
                       lengths: Optional[Tensor], workspace: Tensor, grad_output: Optional[Tensor],
                       grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor], input_size: int, hidden_size: int,
                       num_layers: int, bias: bool, bidirectional: bool, proj_size: int) -> list[Tensor]:
    """Gradients of ``lstm_train``/``gru_train`` from their workspace, as ``rnn_backward`` without dropout."""
    config_args = (input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _gradients(mode, x, h0, c0, params, lengths, [], grad_output, grad_h_n, grad_c_n, config_args, workspace)


@rnn_backward_saved.register_fake
def _rnn_backward_saved_fake(mode, x, h0, c0, params, lengths, workspace, grad_output, grad_h_n, grad_c_n,
                             input_size, hidden_size, num_layers, bias, bidirectional, proj_size):
    config_args = (input_size, hidden_size, num_layers, bias, bidirectional, proj_size)
    return _fake_gradients(mode, x, h0, c0, params, lengths, [], config_args)


# ----------------------------------------------------------------------------------------------------------
# Double backward: a backward that autograd can differentiate again.
# ----------------------------------------------------------------------------------------------------------

def graph_gradients(config: RNNConfig, x, state0, params, lengths, dropout_masks, variant_masks, grads) -> list:
    """[dx, dh0, (dc0), *dparams] as a differentiable function of the inputs and of ``grads``.

    Autograd calls a backward with grad mode on only when it was asked for a graph of the gradients
    (``create_graph=True``: gradient penalties, meta-learning); the native backward ops are opaque to
    autograd, so then the gradients come from differentiating ``equations.forward`` (the same function, in
    torch ops) with ``create_graph=True``. state0 (h0[, c0]); grads (grad_output, grad_h_n[, grad_c_n]),
    None (or an empty GRU c_n gradient) for an output that was not used.
    """
    from . import equations

    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in (x, *state0, *params)]
        n_state = len(state0)
        named = dict(zip(param_shapes(config), inputs[1 + n_state:]))
        output, final = equations.forward(config, named, inputs[0], tuple(inputs[1:1 + n_state]), lengths,
                                          list(dropout_masks) or None, variant_masks)
        outputs = (output, *final)
        used = [(o, g) for o, g in zip(outputs, grads) if g is not None and g.numel()]
        result = torch.autograd.grad([o for o, _ in used], inputs, [g for _, g in used], create_graph=True,
                                     allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, result)]


# ----------------------------------------------------------------------------------------------------------
# Autograd: save the inputs, call rnn_backward.
# ----------------------------------------------------------------------------------------------------------

def _setup_context(mode: str):
    def setup_context(ctx, inputs, output):
        if mode == "LSTM":
            x, h0, c0, params, lengths, masks, *config_args = inputs
        else:
            x, h0, params, lengths, masks, *config_args = inputs
            c0 = None
            config_args = config_args + [0]  # GRU: no projection
        ctx.config_args = tuple(config_args)
        ctx.num_params = len(params)
        ctx.num_masks = len(masks)
        ctx.save_for_backward(x, h0, c0, lengths, *params, *masks)
    return setup_context


def _backward(mode: str):
    def backward(ctx, grad_output, grad_h_n, grad_c_n=None):
        x, h0, c0, lengths, *rest = ctx.saved_tensors
        params, masks = rest[:ctx.num_params], rest[ctx.num_params:]
        if torch.is_grad_enabled():  # create_graph=True: gradients autograd can differentiate again
            grads = graph_gradients(make_config(mode, *ctx.config_args), x, (h0, c0)[:2 if mode == "LSTM" else 1],
                                    params, lengths, masks, None, (grad_output, grad_h_n, grad_c_n))
        else:
            grads = torch.ops.lstmkit.rnn_backward(mode, x, h0, c0, list(params), lengths, list(masks), grad_output,
                                                   grad_h_n, grad_c_n, *ctx.config_args)
        n_states = 2 if mode == "LSTM" else 1
        dx, d_states, d_params = grads[0], grads[1:1 + n_states], grads[1 + n_states:]
        # lengths, the dropout masks (a list: the structure must match the inputs') and the config
        # ints/bools get no gradient
        n_config = 6 if mode == "LSTM" else 5
        return (dx, *d_states, list(d_params), None, [None] * ctx.num_masks) + (None,) * n_config
    return backward


lstm.register_autograd(_backward("LSTM"), setup_context=_setup_context("LSTM"))
gru.register_autograd(_backward("GRU"), setup_context=_setup_context("GRU"))


def _setup_train_context(mode: str):
    def setup_context(ctx, inputs, output):
        if mode == "LSTM":
            x, h0, c0, params, lengths, *config_args = inputs
        else:
            x, h0, params, lengths, *config_args = inputs
            c0 = None
            config_args = config_args + [0]  # GRU: no projection
        workspace = output[-1]
        ctx.mark_non_differentiable(workspace)
        ctx.config_args = tuple(config_args)
        ctx.save_for_backward(x, h0, c0, lengths, workspace, *params)
    return setup_context


def _train_backward(mode: str):
    def backward(ctx, grad_output, grad_h_n, *rest):
        grad_c_n = rest[0] if mode == "LSTM" else None  # the last incoming gradient is the workspace's (None)
        x, h0, c0, lengths, workspace, *params = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients autograd can differentiate again
            grads = graph_gradients(make_config(mode, *ctx.config_args), x, (h0, c0)[:2 if mode == "LSTM" else 1],
                                    params, lengths, [], None, (grad_output, grad_h_n, grad_c_n))
        else:
            grads = torch.ops.lstmkit.rnn_backward_saved(mode, x, h0, c0, list(params), lengths, workspace,
                                                         grad_output, grad_h_n, grad_c_n, *ctx.config_args)
        n_states = 2 if mode == "LSTM" else 1
        dx, d_states, d_params = grads[0], grads[1:1 + n_states], grads[1 + n_states:]
        n_config = 6 if mode == "LSTM" else 5  # lengths and the config ints/bools get no gradient
        return (dx, *d_states, list(d_params), None) + (None,) * n_config
    return backward


lstm_train.register_autograd(_train_backward("LSTM"), setup_context=_setup_train_context("LSTM"))
gru_train.register_autograd(_train_backward("GRU"), setup_context=_setup_train_context("GRU"))
