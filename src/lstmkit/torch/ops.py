"""lstmkit's RNNs as four registered torch custom operators, with autograd, fake kernels and vmap rules.

Every operator takes the configuration as ``config``: ``config_key(RNNConfig)``, the config as a JSON string
(parsed once and cached), so plain and variant cells (docs/variants.md) share one call path. Shapes: x (T, B, I)
sequence-first; h0 (L·D, B, P); c0 (L·D, B, H) for an LSTM, None for a GRU; params in
``param_shapes(config)`` order (torch's weights, then the variants' peephole / ln_*); lengths None or (B,)
int64 in [0, T], any order; dropout_masks [] or L − 1 inter-layer masks (T, B, D·P) already scaled by
1/(1 − p); mask_recurrent [] or L·D masks (B, P); mask_zoneout_c [] or L·D masks (T, B, H) (LSTM);
mask_zoneout_h [] or L·D masks (T, B, P); all three variant masks empty means evaluation (zoneout by its
expectation, no recurrent dropout).

``torch.ops.lstmkit.rnn(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c,
mask_zoneout_h, config) -> (output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H), empty for a GRU)``
    Inference (and training where no workspace is kept: its backward recomputes the forward).
``torch.ops.lstmkit.rnn_train(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c,
mask_zoneout_h, config) -> (output, h_n, c_n, workspace)``
    Training on the native engine, inter-layer dropout included (its masks are an input, as for ``rnn``):
    plus the engine's workspace (1-D, ``engine.workspace_size(config, T, B, bool(mask_recurrent))``
    values, not differentiable), which autograd saves so that the backward does not recompute the forward.
``torch.ops.lstmkit.rnn_backward(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c,
mask_zoneout_h, workspace, grad_output, grad_h_n, grad_c_n, config) -> [dx, dh0, (dc0), *dparams]``
    The backward of both, an operator of its own so that torch.compile / torch.export trace the backward
    graph with fake tensors; workspace is ``rnn_train``'s, or None to recompute the forward; a None gradient
    stands for an unused output (zeros).
``torch.ops.lstmkit.rnn_step(x, h0, c0, params, config) -> (h_1 (L, B, P), c_1 (L, B, H) or empty)``
    One time step of a unidirectional stack: x (B, I), the state in and out (the cells, and streaming
    with the state held by the caller); differentiable through ``rnn_backward`` with T = 1.

The computation is the native engine (``lstmkit.engine``) where it supports the config (the inter-layer
dropout masks an input of its calls), else the NumPy reference: ``_numpy_forward`` and ``_numpy_backward``
are the one place that decides. The operators take CPU tensors only (another device
is refused by name, never copied to the CPU and back; the modules dispatch other devices to torch's kernels,
``lstmkit.torch.devices``). Inputs are validated with ``lstmkit.checks`` in both the real and the fake kernel,
so a direct call with a bad argument raises the same ValueError/TypeError, naming the argument, as the modules.

Double backward: a backward run with ``create_graph=True`` differentiates ``lstmkit.torch.equations`` (the
same function in torch ops) instead of calling ``rnn_backward`` (``graph_gradients``). torch.func: custom ops'
registered autograd does not support functorch transforms (pytorch/pytorch#168393), so under ``torch.func.grad``
/ ``vmap`` the modules call the same operators through ``_FunctorchCall``, an autograd.Function with the same
formulas; every operator has a vmap rule (``_loop_rule``: the operator once per sample, results stacked).
"""
from __future__ import annotations

import functools
import json
import re
from typing import Optional

import numpy as np
import torch

from .. import checks, engine
from ..params import RNNConfig, check_dtype, param_shapes, suffix
from ..ref import rnn as ref_rnn
from ..ref.variants import VariantMasks
from . import devices

__all__ = ["rnn", "rnn_train", "rnn_backward", "rnn_step", "OPERATORS", "call", "step", "config_key", "parse_config",
           "trains_natively", "graph_gradients"]

Tensor = torch.Tensor
OPERATORS = ("rnn", "rnn_train", "rnn_backward", "rnn_step")  # every operator registered under lstmkit::
NO_MASKS = ([], [], [])
_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


@functools.lru_cache(maxsize=256)
def config_key(config: RNNConfig) -> str:
    """The config as the JSON string the operators take (sequence-first, no dropout rate: masks carry it)."""
    d = config.to_dict()
    d.update(batch_first=False, dropout=0.0)
    return json.dumps(d, sort_keys=True)


def with_precision(key: str, precision: str) -> str:
    """``key`` for a training call whose products run in ``precision`` (``engine.check_precision``): the field
    ``"precision"`` appended (string operations only, so torch.compile traces it)."""
    return key if precision == "float32" else key[:-1] + ', "precision": "' + precision + '"}'


@functools.lru_cache(maxsize=256)
def _parse_key(key: str) -> tuple[RNNConfig, str]:
    try:
        fields = json.loads(key)
        precision = fields.pop("precision", "float32")
        config = RNNConfig(**fields)
    except (json.JSONDecodeError, TypeError, AttributeError) as e:  # RNNConfig's own ValueErrors name the field
        raise ValueError(f"config: expected config_key(RNNConfig), a JSON object of RNNConfig's fields, "
                         f"got {key[:80]!r} ({e})") from e
    if precision not in engine.PRECISIONS:
        raise ValueError(f"config: 'precision' expected one of {engine.PRECISIONS}, got {precision!r}")
    return config, precision


def parse_config(key: str) -> RNNConfig:
    """The RNNConfig of an operator's ``config`` argument (validated by RNNConfig, cached per string)."""
    return _parse_key(key)[0]


BF16_MIN_BATCH = 4  # below it bf16 products do not pay for their rounding (measured in training_precision)


def training_precision(config: RNNConfig, x: Tensor) -> str:
    """A training call's precision: "bfloat16" under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (torch's
    mixed precision) for a float32 model whose cells have bf16 products (plain LSTM/GRU, no projection) and a
    batch (x: (T, B, I)) of at least BF16_MIN_BATCH rows, "float32" otherwise, which autocast permits: the options
    without bf16 products, and the smallest batches, where a step is too small for them to pay
    (benchmarks/bench_bf16_training.py, Zen 4, H = 128: bf16 / float32 time LSTM 1.17 at B = 1, 0.95 at B = 2,
    0.94 at B = 4; GRU 1.56, 0.99, 0.88)."""
    if (not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") != torch.bfloat16
            or x.shape[1] < BF16_MIN_BATCH):
        return "float32"
    dtype_name = "float32" if x.dtype == torch.float32 else str(x.dtype).removeprefix("torch.")
    return "float32" if engine.bf16_refusal(config, dtype_name) else "bfloat16"


# ----------------------------------------------------------------------------------------------------------
# Validation, shared by the real and the fake kernels (shapes and dtypes only, plus lengths' values when
# they are real).
# ----------------------------------------------------------------------------------------------------------

def _check_params(config: RNNConfig, params, dtype) -> None:
    shapes = param_shapes(config)
    if len(params) != len(shapes):
        raise ValueError(f"params: expected {len(shapes)} tensors ({', '.join(shapes)}), got {len(params)}")
    for (name, shape), p in zip(shapes.items(), params):
        if tuple(p.shape) != shape:
            raise ValueError(f"params ({name}): expected shape {shape}, got {tuple(p.shape)}")
        checks.check_dtype_matches(f"params ({name})", p.dtype, dtype)


def _check_variant_masks(config: RNNConfig, T: int, B: int, dtype, m_rd, m_zc, m_zh) -> None:
    # a mask for an option the config does not have would be ignored by the plain kernels: refused instead
    rates = {"recurrent": config.recurrent_dropout, "zoneout_c": config.zoneout[0], "zoneout_h": config.zoneout[1]}
    given = dict(recurrent=m_rd, zoneout_c=m_zc, zoneout_h=m_zh)
    for field, masks in given.items():
        if masks and not rates[field]:
            raise ValueError(f"mask_{field}: expected [] for a config without that option "
                             f"({'recurrent_dropout' if field == 'recurrent' else 'zoneout'} = 0), "
                             f"got {len(masks)} masks")
    checks.check_variant_masks(config, T, B, dtype, given, "mask_")


def _check_args(config: RNNConfig, x, h0, c0, params, lengths, dropout_masks=(), masks=NO_MASKS) -> tuple[int, int]:
    """Validate an operator call; returns (T, B). x must be 3-D (T, B, I): the modules handle layouts."""
    dtype = x.dtype
    if x.ndim != 3:
        raise ValueError(f"input: expected 3 dimensions (T, B, I) for the operator, got shape {tuple(x.shape)}")
    T, B, _ = checks.check_input(config, x, dtype)
    check_dtype(checks.dtype_name(dtype))  # float32 or float64 only, else TypeError naming dtype
    checks.check_state(config, (h0, c0) if config.mode == "LSTM" else h0, B, False, dtype)
    _check_params(config, params, dtype)
    if lengths is not None:
        checks.check_lengths_form(lengths, B)
    checks.check_dropout_masks(config, T, B, dtype, dropout_masks)
    _check_variant_masks(config, T, B, dtype, *masks)
    return T, B


def _check_cpu(x) -> None:
    """lstmkit's kernels run on the CPU; a tensor elsewhere is refused, never silently copied there and back
    (the modules compute non-CPU tensors with torch's own kernels: lstmkit.torch.devices)."""
    if x.device.type != "cpu":
        raise ValueError(f"input: lstmkit's operators run on CPU tensors, got one on {x.device}; the modules "
                         "(lstmkit.torch.LSTM/GRU/...) compute it with torch's kernels there")


# ----------------------------------------------------------------------------------------------------------
# Tensors <-> the NumPy calls, and the one place that picks the engine or the reference.
# ----------------------------------------------------------------------------------------------------------

def _np(t: Optional[Tensor]):
    # resolve_neg: torch may hand an operator a lazily negated view (torch._neg_view; the imaginary part of a
    # conjugate), whose memory holds the values without their sign; a no-op for any other tensor
    return None if t is None else t.detach().resolve_neg().numpy()


def _to_torch(a: np.ndarray) -> Tensor:
    # A custom op's outputs may not alias its inputs or each other, and the fake kernels promise contiguous
    # outputs, so strides agree between tracing and running. An array that owns its memory and is C-contiguous
    # is one the engine (or the reference) has just made for this call: it becomes the tensor as it is, without
    # the copy (a backward's gradients are megabytes). Anything else — a view, another layout, the caller's own
    # array — is copied.
    if _memory_owner(a) is not None:
        return torch.from_numpy(a)
    return torch.from_numpy(np.array(a, order="C", copy=True))


def _memory_owner(a: np.ndarray) -> Optional[np.ndarray]:
    """The array owning all of ``a``'s memory and nothing more (``a`` itself, or the base ``a`` is a whole view
    of), when ``a`` is C-contiguous and writeable; None otherwise."""
    root = a if a.base is None else a.base
    if (type(root) is np.ndarray and root.base is None and root.flags.owndata and root.nbytes == a.nbytes
            and a.flags.c_contiguous and a.flags.writeable):
        return root
    return None


def _numpy_args(config, x, h0, c0, params, lengths, dropout_masks, masks):
    """A real call's arguments as the engine and the reference take them (checked; lengths' values too)."""
    _check_cpu(x)
    T, B = _check_args(config, x, h0, c0, params, lengths, dropout_masks, masks)
    lengths_np = None if lengths is None else checks.check_lengths(_np(lengths), T, B)
    return _as_numpy(config, x, h0, c0, params, lengths_np, dropout_masks, masks)


def _as_numpy(config, x, h0, c0, params, lengths_np, dropout_masks, masks):
    """Checked arguments as NumPy views of the tensors: (params by name, x, state0, lengths, dropout masks or
    None, VariantMasks or None)."""
    params_np = dict(zip(param_shapes(config), (_np(p) for p in params)))
    state0 = (_np(h0), _np(c0)) if config.mode == "LSTM" else (_np(h0),)
    drop = [_np(m) for m in dropout_masks] or None
    m_rd, m_zc, m_zh = masks
    variant = VariantMasks([_np(m) for m in m_rd] or None, [_np(m) for m in m_zc] or None,
                           [_np(m) for m in m_zh] or None) if (m_rd or m_zc or m_zh) else None
    return params_np, _np(x), state0, lengths_np, drop, variant


def _numpy_forward(config, params, x, state0, lengths, drop, variant):
    """(output, final state) on the engine where it supports config, else on the reference."""
    if not engine.supports(config):
        output, final, _ = ref_rnn.forward(config, params, x, state0, lengths, drop, variant)
    else:
        output, final = engine.forward(config, params, x, state0, lengths, variant, drop)
    return output, final


def _numpy_backward(config, params, x, state0, lengths, drop, variant, workspace, d_out, d_final,
                    precision="float32"):
    """(dx, d_state0, grads by name): from the workspace, or with the forward recomputed (engine or reference)."""
    if not engine.supports(config):
        _, _, cache = ref_rnn.forward(config, params, x, state0, lengths, drop, variant)
        return ref_rnn.backward(cache, d_out, d_final)
    return engine.backward(config, params, x, d_out, d_final, state0, lengths, variant, workspace=workspace,
                           dropout_masks=drop, precision=precision)


def _states_out(config, final, x) -> tuple[Tensor, Tensor]:
    """(h_n, c_n) as tensors; a GRU's c_n is an empty tensor (an operator returns a fixed number of tensors)."""
    return _to_torch(final[0]), (_to_torch(final[1]) if config.mode == "LSTM" else x.new_empty(0))


def _fake_forward(config, x, h0, c0, params, lengths, dropout_masks, masks):
    T, B = _check_args(config, x, h0, c0, params, lengths, dropout_masks, masks)
    K = config.num_layers * config.num_directions
    c_n = x.new_empty((K, B, config.hidden_size)) if config.mode == "LSTM" else x.new_empty(0)
    return x.new_empty((T, B, config.num_directions * config.output_size)), x.new_empty((K, B, config.output_size)), c_n


# ----------------------------------------------------------------------------------------------------------
# The operators
# ----------------------------------------------------------------------------------------------------------

@torch.library.custom_op("lstmkit::rnn", mutates_args=())
def rnn(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], lengths: Optional[Tensor],
        dropout_masks: list[Tensor], mask_recurrent: list[Tensor], mask_zoneout_c: list[Tensor],
        mask_zoneout_h: list[Tensor], config: str) -> tuple[Tensor, Tensor, Tensor]:
    """An LSTM/GRU over x (T, B, I) -> (output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H) or empty)."""
    cfg = parse_config(config)
    args = _numpy_args(cfg, x, h0, c0, params, lengths, dropout_masks, (mask_recurrent, mask_zoneout_c, mask_zoneout_h))
    return _inference(cfg, x, args)


def _inference(cfg: RNNConfig, x: Tensor, args: tuple) -> tuple[Tensor, Tensor, Tensor]:
    """``rnn``'s computation on arguments already checked and converted (_numpy_args, _as_numpy)."""
    output, final = _numpy_forward(cfg, *args)
    return (_to_torch(output), *_states_out(cfg, final, x))


@rnn.register_fake
def _rnn_fake(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h, config):
    masks = (mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    return _fake_forward(parse_config(config), x, h0, c0, params, lengths, dropout_masks, masks)


@torch.library.custom_op("lstmkit::rnn_train", mutates_args=())
def rnn_train(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], lengths: Optional[Tensor],
              dropout_masks: list[Tensor], mask_recurrent: list[Tensor], mask_zoneout_c: list[Tensor],
              mask_zoneout_h: list[Tensor], config: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``rnn`` natively for training -> (output, h_n, c_n or empty, workspace)."""
    cfg, precision = _parse_key(config)
    return _train_computation(cfg, x, _numpy_args(cfg, x, h0, c0, params, lengths, dropout_masks,
                                                  (mask_recurrent, mask_zoneout_c, mask_zoneout_h)), precision)


def _train_computation(cfg: RNNConfig, x: Tensor, args: tuple,
                       precision: str = "float32") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``rnn_train``'s computation on arguments already checked and converted (_numpy_args, _as_numpy)."""
    params_np, x_np, state0, lengths_np, drop, variant = args
    output, final, workspace = engine.train_forward(cfg, params_np, x_np, state0, lengths_np, variant, drop,
                                                    precision)
    return _to_torch(output), *_states_out(cfg, final, x), torch.from_numpy(workspace)


@rnn_train.register_fake
def _rnn_train_fake(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h,
                    config):
    cfg = parse_config(config)
    outputs = _fake_forward(cfg, x, h0, c0, params, lengths, dropout_masks,
                            (mask_recurrent, mask_zoneout_c, mask_zoneout_h))
    size = engine.workspace_size(cfg, x.shape[0], x.shape[1], bool(mask_recurrent))
    return (*outputs, x.new_empty((size,)))


@torch.library.custom_op("lstmkit::rnn_backward", mutates_args=())
def rnn_backward(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], lengths: Optional[Tensor],
                 dropout_masks: list[Tensor], mask_recurrent: list[Tensor], mask_zoneout_c: list[Tensor],
                 mask_zoneout_h: list[Tensor], workspace: Optional[Tensor], grad_output: Optional[Tensor],
                 grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor], config: str) -> list[Tensor]:
    """Gradients of ``rnn`` / ``rnn_train`` -> [dx (T, B, I), dh0, (dc0), *dparams in param_shapes order]."""
    cfg, precision = _parse_key(config)
    masks = (mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    args = _numpy_args(cfg, x, h0, c0, params, lengths, dropout_masks, masks)
    return _backward_computation(cfg, args, workspace, grad_output, grad_h_n, grad_c_n, precision)


def _backward_computation(cfg: RNNConfig, args: tuple, workspace: Optional[Tensor], grad_output: Optional[Tensor],
                          grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor],
                          precision: str = "float32") -> list[Tensor]:
    """``rnn_backward``'s computation on converted arguments; a None gradient is zeros."""
    params_np, x_np, state0, lengths_np, drop, variant = args
    d_out = np.zeros(x_np.shape[:2] + (cfg.num_directions * cfg.output_size,), x_np.dtype)
    if grad_output is not None:
        d_out = _np(grad_output)
    finals = (grad_h_n, grad_c_n) if cfg.mode == "LSTM" else (grad_h_n,)
    shapes = checks.state_shapes(cfg, x_np.shape[1])
    d_final = tuple(np.zeros(s, x_np.dtype) if g is None or g.numel() == 0 else _np(g) for s, g in zip(shapes, finals))
    dx, d_state0, grads = _numpy_backward(cfg, params_np, x_np, state0, lengths_np, drop, variant, _np(workspace),
                                          d_out, d_final, precision)
    result = [np.asarray(g, dtype=x_np.dtype) for g in (dx, *d_state0, *(grads[name] for name in param_shapes(cfg)))]
    # Each output its own memory, even if a path hands back one array (or two views of it) twice.
    owners = [_memory_owner(g) for g in result]
    return [_to_torch(g if owners[k] is None or all(owners[k] is not o for o in owners[:k]) else g.copy())
            for k, g in enumerate(result)]


@rnn_backward.register_fake
def _rnn_backward_fake(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h,
                       workspace, grad_output, grad_h_n, grad_c_n, config):
    cfg = parse_config(config)
    _check_args(cfg, x, h0, c0, params, lengths, dropout_masks, (mask_recurrent, mask_zoneout_c, mask_zoneout_h))
    states = (h0, c0) if cfg.mode == "LSTM" else (h0,)
    # contiguous like the real kernel's results (empty_like would copy the strides of, e.g., a transposed x)
    return [x.new_empty(x.shape), *(s.new_empty(s.shape) for s in states), *(p.new_empty(p.shape) for p in params)]


def _check_step(cfg: RNNConfig, x) -> None:
    if cfg.bidirectional:
        raise ValueError("config: rnn_step computes one step of a unidirectional stack, got bidirectional=True")
    if x.ndim != 2:
        raise ValueError(f"input: expected 2 dimensions (B, I) for rnn_step, got shape {tuple(x.shape)}")


@torch.library.custom_op("lstmkit::rnn_step", mutates_args=())
def rnn_step(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], config: str) -> tuple[Tensor, Tensor]:
    """One step x (B, I) of a unidirectional stack in evaluation -> (h_1 (L, B, P), c_1 (L, B, H) or empty)."""
    cfg = parse_config(config)
    _check_step(cfg, x)
    _check_cpu(x)
    _check_args(cfg, x[None], h0, c0, params, None, [], NO_MASKS)
    return _step_inference(cfg, x, h0, c0, params)


def _step_inference(cfg: RNNConfig, x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list) -> tuple:
    """``rnn_step``'s computation on checked arguments -> (h_1 (L, B, P), c_1 (L, B, H) or empty). One plain
    layer (a cell's step) is the engine's cell, ``engine.cell_forward``: at a small batch its products read the
    weights in place, where a sequence call would first pack them (most of a B = 1 step's native time); a
    stack, a projection, a variant cell or no engine: the sequence forward with T = 1."""
    if not (cfg.num_layers == 1 and cfg.is_plain and not cfg.proj_size and engine.supports(cfg)):
        return _inference(cfg, x, _as_numpy(cfg, x[None], h0, c0, params, None, [], NO_MASKS))[1:]
    lstm = cfg.mode == "LSTM"
    new = _cell_forward(cfg.mode, x, h0[0], c0[0] if lstm else None, params)
    return torch.from_numpy(new[0][None]), (torch.from_numpy(new[1][None]) if lstm else x.new_empty(0))


@rnn_step.register_fake
def _rnn_step_fake(x, h0, c0, params, config):
    cfg = parse_config(config)
    _check_step(cfg, x)
    return _fake_forward(cfg, x[None], h0, c0, params, None, [], NO_MASKS)[1:]


# ----------------------------------------------------------------------------------------------------------
# Autograd: one formula, registered on the operators and used by _FunctorchCall.
# ----------------------------------------------------------------------------------------------------------

def graph_gradients(config: RNNConfig, x, state0, params, lengths, dropout_masks, variant_masks, grads, *,
                    step: bool = False, cell: bool = False) -> list:
    """[dx, dh0, (dc0), *dparams] as a differentiable function of the inputs and of ``grads``.

    Autograd calls a backward with grad mode on only when it was asked for a graph of the gradients
    (``create_graph=True``: gradient penalties, meta-learning); the native backward op is opaque to
    autograd, so then the gradients come from differentiating ``equations.forward`` (the same function, in
    torch ops) with ``create_graph=True``. state0 (h0[, c0]); grads (grad_output, grad_h_n[, grad_c_n]),
    None (or an empty GRU c_n gradient) for an output that was not used. step: x is one step (B, I) of
    ``rnn_step`` (made (1, B, I) inside the differentiated function: a view made out here is not
    differentiated correctly under autograd's legacy batching). cell: as step, and the state (h[, c]) and its
    gradients are a cell's, (B, H) each, without the layer axis (given it inside too).
    """
    from . import equations

    n_state = len(state0)
    names = list(param_shapes(config))

    def forward(x, *rest):
        x = x[None] if step or cell else x
        state = tuple(s[None] for s in rest[:n_state]) if cell else tuple(rest[:n_state])
        output, final = equations.forward(config, dict(zip(names, rest[n_state:])), x, state, lengths,
                                          list(dropout_masks) or None, variant_masks)
        return (output, *(f[0] for f in final)) if cell else (output, *final)

    inputs = (x, *state0, *params)
    if torch._C._functorch.maybe_current_level() is not None:  # torch.func (grad of grad): its own vjp
        outputs, vjp = torch.func.vjp(forward, *inputs)
        return list(vjp(tuple(torch.zeros_like(o) if g is None or not g.numel() else g
                              for o, g in zip(outputs, grads))))
    with torch.enable_grad():
        inputs = [t if t.requires_grad else t.detach().requires_grad_() for t in inputs]
        outputs = forward(*inputs)
        used = [(o, g) for o, g in zip(outputs, grads) if g is not None and g.numel()]
        result = torch.autograd.grad([o for o, _ in used], inputs, [g for _, g in used], create_graph=True,
                                     allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, result)]


def _save(ctx, config: str, x, h0, c0, lengths, workspace, params, mask_lists) -> None:
    """What a backward needs: the inputs, the workspace (or None) and the masks (dropout, recurrent, zoneout)."""
    ctx.config = config
    ctx.counts = (len(params), *(len(m) for m in mask_lists))
    ctx.save_for_backward(x, h0, c0, lengths, workspace, *params, *(m for masks in mask_lists for m in masks))


def _setup_context(ctx, inputs, output):
    x, h0, c0, params, lengths, drop, m_rd, m_zc, m_zh, config = inputs
    _save(ctx, config, x, h0, c0, lengths, None, params, (drop, m_rd, m_zc, m_zh))


def _setup_train_context(ctx, inputs, output):
    x, h0, c0, params, lengths, drop, m_rd, m_zc, m_zh, config = inputs
    ctx.mark_non_differentiable(output[-1])
    # Unused outputs' gradients stay None: materialised, the workspace's alone would be zeros of its whole
    # size on every backward (8 MB per batch in the word-LM shape, fresh pages each time); rnn_backward
    # reads None as zeros of the small shapes it needs.
    ctx.set_materialize_grads(False)
    _save(ctx, config, x, h0, c0, lengths, output[-1], params, (drop, m_rd, m_zc, m_zh))


def _setup_step_context(ctx, inputs, output):
    x, h0, c0, params, config = inputs
    ctx.step = True
    _save(ctx, config, x, h0, c0, None, None, params, NO_MASKS + ([],))


def _split(flat, counts) -> list[list]:
    lists, start = [], 0
    for n in counts:
        lists.append(list(flat[start:start + n]))
        start += n
    return lists


def _functorch_levels() -> int:
    """How many torch.func differentiation levels (grad, jvp) are active; 0 outside torch.func."""
    stack = torch._C._functorch.get_interpreter_stack()
    return sum(str(level.key()) != "TransformType.Vmap" for level in stack or ())


_LEGACY_BATCHED = re.compile(r"\bBatched\b")


def _legacy_batched(grads) -> bool:
    """Whether autograd vmaps this backward with its legacy batching (``torch.autograd.grad(is_grads_batched=True)``,
    gradcheck's check_batched_grad), which custom operators' vmap rules do not reach."""
    # the legacy key "Batched" is not in Python's DispatchKey enum; \b keeps functorch's "FuncTorchBatched" out
    return any(g is not None and _LEGACY_BATCHED.search(str(torch._C._dispatch_keys(g))) for g in grads)


def _base(t: Tensor) -> Tensor:
    """The plain tensor under torch.func's wrappers (grad tracking, batching)."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t


def _graph_wanted(levels: int, saved, grads) -> bool:
    """Whether the gradients must come from equations.py: they must be differentiable again, or autograd's
    legacy batching vmaps the backward (rnn_backward has no rule there; torch ops do).

    Differentiable again: create_graph=True; or, with ``levels`` torch.func differentiation levels active
    (torch.func runs every backward with grad mode on, so grad mode says nothing there), a transform nested
    around the one differentiating now (grad of grad), or ordinary autograd recording under torch.func (a
    tensor beneath the wrappers requires grad: ``torch.func.grad`` of a module whose parameters require grad,
    whose result a training loss then differentiates)."""
    if levels:
        return levels > 1 or any(t is not None and _base(t).requires_grad for t in (*saved, *grads))
    return torch.is_grad_enabled() or _legacy_batched(grads)


def _input_gradients(ctx, grad_output, grad_h_n, grad_c_n) -> tuple:
    """(dx, dh0, dc0 or None, dparams list) of the saved call for the incoming gradients."""
    saved = ctx.saved_tensors  # read once: activation checkpointing (use_reentrant=False) allows one unpack
    x, h0, c0, lengths, workspace, *rest = saved
    params, drop, m_rd, m_zc, m_zh = _split(rest, ctx.counts)
    step = getattr(ctx, "step", False)  # rnn_step: the sequence backward of T = 1, the new state as h_n / c_n
    lstm = c0 is not None
    levels = 0 if torch.compiler.is_compiling() else _functorch_levels()
    if _graph_wanted(levels, saved, (grad_output, grad_h_n, grad_c_n)):
        masks = VariantMasks(m_rd or None, m_zc or None, m_zh or None) if (m_rd or m_zc or m_zh) else None
        grads = graph_gradients(parse_config(ctx.config), x, (h0, c0) if lstm else (h0,), params, lengths, drop,
                                masks, (grad_output, grad_h_n, grad_c_n if lstm else None), step=step)
    else:
        if levels:  # torch.func tracks the tensors at the level differentiating now; the native backward is
            # not differentiable, so they are detached for the operator to run (nesting went to graph_gradients)
            x, h0, c0, workspace, grad_output, grad_h_n, grad_c_n = (
                None if t is None else t.detach() for t in (x, h0, c0, workspace, grad_output, grad_h_n, grad_c_n))
            params, drop, m_rd, m_zc, m_zh = ([t.detach() for t in ts] for ts in (params, drop, m_rd, m_zc, m_zh))
        grads = torch.ops.lstmkit.rnn_backward(x[None] if step else x, h0, c0, params, lengths, drop, m_rd, m_zc,
                                               m_zh, workspace, grad_output, grad_h_n, grad_c_n if lstm else None,
                                               ctx.config)
        grads[0] = grads[0][0] if step else grads[0]
    n_states = 2 if lstm else 1
    d_params = list(grads[1 + n_states:])
    if not step:
        d_params = _unreached_projection(parse_config(ctx.config), x.shape[0], grad_output, grad_h_n, d_params)
    return grads[0], grads[1], (grads[2] if lstm else None), d_params


def _unreached_projection(config: RNNConfig, steps: int, grad_output, grad_h_n, d_params: list) -> list:
    """``d_params`` with the last layer's ``weight_hr`` gradients None where torch.nn.LSTM leaves them None: its
    projection is torch ops, so autograd finds no path to it when the loss reads neither output nor h_n (their
    gradients None: unused, which a zero gradient is not) and there is one step (no later step reads the
    projected h); c_n does not depend on it. The native backward gives zeros there. Only this structural case:
    a weight the loss reaches keeps its gradient, zero or not."""
    if not config.proj_size or steps != 1 or grad_output is not None or grad_h_n is not None:
        return d_params
    last = {"weight_hr" + suffix(config.num_layers - 1, d) for d in range(config.num_directions)}
    return [None if name in last else g for name, g in zip(param_shapes(config), d_params)]


def _backward(ctx, grad_output, grad_h_n, grad_c_n):
    dx, dh0, dc0, d_params = _input_gradients(ctx, grad_output, grad_h_n, grad_c_n)
    # lengths, every mask list (structure must match the inputs') and the config get no gradient
    mask_grads = [[None] * n for n in ctx.counts[1:]]
    return dx, dh0, dc0, d_params, None, *mask_grads, None


def _train_backward(ctx, grad_output, grad_h_n, grad_c_n, _grad_workspace):
    return _backward(ctx, grad_output, grad_h_n, grad_c_n)


def _step_backward(ctx, grad_h, grad_c):
    dx, dh0, dc0, d_params = _input_gradients(ctx, None, grad_h, grad_c)
    return dx, dh0, dc0, d_params, None


rnn.register_autograd(_backward, setup_context=_setup_context)
rnn_train.register_autograd(_train_backward, setup_context=_setup_train_context)
rnn_step.register_autograd(_step_backward, setup_context=_setup_step_context)


# ----------------------------------------------------------------------------------------------------------
# torch.func: vmap rules, and the autograd.Function functorch can differentiate.
# ----------------------------------------------------------------------------------------------------------

def _sample(args, in_dims, n: int) -> list:
    """The n-th sample of each argument: a tensor (or each tensor of a list) batched along its in_dim."""
    def take(a, d):
        if isinstance(a, (list, tuple)):
            return [take(t, e) for t, e in zip(a, d)] if isinstance(d, (list, tuple)) else list(a)
        return a if d is None else a.select(d, n)
    return [take(a, d) for a, d in zip(args, in_dims)]


def _loop_rule(op):
    """A vmap rule that applies ``op`` to each sample and stacks the results along dim 0.

    Sound for every lstmkit operator: each is a function of its arguments only (masks are inputs, no
    randomness inside), so per-sample application is exactly vmap's meaning. The engine sums parameter
    gradients over the batch, so samples cannot be folded into the RNN's batch for ``rnn_backward``.
    """
    def rule(info, in_dims, *args):
        results = [op(*_sample(args, in_dims, n)) for n in range(info.batch_size)]
        stacked = [torch.stack(parts) for parts in zip(*results)]
        if isinstance(results[0], list):
            return stacked, [0] * len(stacked)
        return tuple(stacked), (0,) * len(stacked)
    return rule


for _op in (rnn, rnn_train, rnn_backward, rnn_step):
    torch.library.register_vmap(_op, _loop_rule(_op))


class _FunctorchCall(torch.autograd.Function):
    """``rnn``, ``rnn_train`` or ``rnn_step`` with the operators' autograd formula, for torch.func transforms
    (functorch needs an autograd.Function with setup_context; tensors are passed flat, lists are not tracked).

    apply(op, config, counts, x, h0, c0, lengths, *params, *dropout_masks, *m_rd, *m_zc, *m_zh), op the
    operator's name, counts the five lists' lengths."""

    generate_vmap_rule = True

    @staticmethod
    def forward(op, config, counts, x, h0, c0, lengths, *flat):
        params, drop, m_rd, m_zc, m_zh = _split(flat, counts)
        if op == "rnn_step":
            return torch.ops.lstmkit.rnn_step(x, h0, c0, params, config)
        if op == "rnn_train":
            return torch.ops.lstmkit.rnn_train(x, h0, c0, params, lengths, drop, m_rd, m_zc, m_zh, config)
        return torch.ops.lstmkit.rnn(x, h0, c0, params, lengths, drop, m_rd, m_zc, m_zh, config)

    @staticmethod
    def setup_context(ctx, inputs, output):
        op, config, counts, x, h0, c0, lengths, *flat = inputs
        params, *mask_lists = _split(flat, counts)
        workspace = output[-1] if op == "rnn_train" else None
        if workspace is not None:
            ctx.mark_non_differentiable(workspace)
        ctx.step = op == "rnn_step"
        _save(ctx, config, x, h0, c0, lengths, workspace, params, mask_lists)

    @staticmethod
    def jvp(ctx, *tangents):
        raise NotImplementedError("lstmkit::rnn, rnn_train, rnn_step: no forward-mode derivative (torch.func.jvp, "
                                  "jacfwd, hessian); use reverse mode (torch.func.vjp, grad, jacrev)")

    @staticmethod
    def backward(ctx, *grads):
        grad_output, grad_h_n, grad_c_n = (None, *grads) if ctx.step else grads[:3]
        dx, dh0, dc0, d_params = _input_gradients(ctx, grad_output, grad_h_n, grad_c_n)
        return None, None, None, dx, dh0, dc0, None, *d_params, *([None] * sum(ctx.counts[1:]))


def _functorch_call(op: str, config: str, x, h0, c0, lengths, params, dropout_masks=(), variant_masks=NO_MASKS):
    counts = (len(params), len(dropout_masks), *(len(m) for m in variant_masks))
    flat = [*params, *dropout_masks, *(m for masks in variant_masks for m in masks)]
    return _FunctorchCall.apply(op, config, counts, x, h0, c0, lengths, *flat)


def _under_torch_func() -> bool:
    """Whether a torch.func transform is active and autograd may record (then the operators go through
    _FunctorchCall; torch.compile traces the plain operator calls)."""
    return not torch.compiler.is_compiling() and torch._C._functorch.maybe_current_level() is not None \
        and torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------------------
# The modules' one call
# ----------------------------------------------------------------------------------------------------------

def trains_natively(x: Tensor, state0, params) -> bool:
    """Whether a call should go through ``rnn_train``: the engine is built and autograd will want a gradient
    of something."""
    if not engine.available() or not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in (x, *state0, *params))


_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


def _module_args(config: RNNConfig, x, h0, c0, params, lengths, dropout_masks, variant_masks) -> tuple:
    """A module's call converted (_as_numpy) once what the module does not check is checked: its parameters (an
    attribute may have been replaced) and the lengths' values. The module checked and made the rest."""
    _check_params(config, params, x.dtype)
    lengths_np = None if lengths is None else checks.check_lengths(_np(lengths), x.shape[0], x.shape[1])
    return _as_numpy(config, x, h0, c0, params, lengths_np, dropout_masks, variant_masks)


def _inference_undispatched(config: RNNConfig, x, h0, c0, params, lengths, dropout_masks, variant_masks) -> tuple:
    """``rnn``'s outputs for a module's call, without the dispatcher."""
    return _inference(config, x, _module_args(config, x, h0, c0, params, lengths, dropout_masks, variant_masks))


class _EagerTrain(torch.autograd.Function):
    """A sequence module's training call in plain eager mode: ``rnn_train``'s computation and ``rnn_backward``'s
    (the same functions, so the same bits) through autograd.Function instead of the operators' registered
    autograd, whose pytree flattening and two dispatches cost ~0.35 ms a training call (a third of one at B = 1,
    T = 100, H = 128), with one round of checks instead of three. Inputs: the RNNConfig, the counts of the flat
    lists (params, dropout masks, the three variant mask lists), x, h0, c0 or None, lengths or None, then the
    lists flat; outputs (output, h_n, c_n or empty), as ``rnn_train``'s without the workspace (kept here)."""

    @staticmethod
    def forward(ctx, config, precision, counts, x, h0, c0, lengths, *flat):
        params, drop, *masks = _split(flat, counts)
        args = _module_args(config, x, h0, c0, params, lengths, drop, masks)
        output, h_n, c_n, workspace = _train_computation(config, x, args, precision)
        ctx.set_materialize_grads(False)  # (an unused output's gradient stays None: zeros of the small shapes)
        ctx.config, ctx.precision, ctx.counts, ctx.lengths_np = config, precision, counts, args[3]
        ctx.save_for_backward(x, h0, c0, lengths, workspace, *flat)
        return output, h_n, c_n

    @staticmethod
    def backward(ctx, grad_output, grad_h_n, grad_c_n):
        saved = ctx.saved_tensors  # read once: activation checkpointing (use_reentrant=False) allows one unpack
        x, h0, c0, lengths, workspace, *flat = saved
        params, drop, *masks = _split(flat, ctx.counts)
        cfg, lstm = ctx.config, c0 is not None
        grads = (grad_output, grad_h_n, grad_c_n if lstm else None)
        if _graph_wanted(0, saved, grads):  # create_graph=True: gradients as a function (torch ops)
            variant = VariantMasks(*(m or None for m in masks)) if any(masks) else None
            result = graph_gradients(cfg, x, (h0, c0) if lstm else (h0,), params, lengths, drop, variant, grads)
        else:
            args = _as_numpy(cfg, x, h0, c0, params, ctx.lengths_np, drop, masks)
            result = _backward_computation(cfg, args, workspace, *grads, ctx.precision)
        n = 2 if lstm else 1
        d_params = _unreached_projection(cfg, x.shape[0], grad_output, grad_h_n, list(result[1 + n:]))
        return (None, None, None, result[0], result[1], result[2] if lstm else None, None, *d_params,
                *([None] * (len(flat) - len(params))))


def call(config: RNNConfig, key: str, x: Tensor, state0: tuple, params: list, lengths=None, dropout_masks=(),
         variant_masks=NO_MASKS, train: bool = False) -> tuple[Tensor, tuple]:
    """One sequence call: ``rnn_train`` when ``train`` (the caller checked ``trains_natively`` and
    ``engine.supports``; in plain eager mode its computation through ``_EagerTrain``), else ``rnn`` (or its
    computation without the dispatcher: _undispatched) -> (output
    (T, B, D·P), (h_n[, c_n])). key: ``config_key(config)``; state0 (h0[, c0]); variant_masks the three lists
    (recurrent, zoneout_c, zoneout_h). The caller (a module) has checked x, state0 and lengths."""
    h0, c0 = state0[0], (state0[1] if config.mode == "LSTM" else None)
    masks = [m for ms in variant_masks for m in ms]
    precision = training_precision(config, x) if train else "float32"
    key = with_precision(key, precision)
    if _under_torch_func():
        outputs = _functorch_call("rnn_train" if train else "rnn", key, x, h0, c0, lengths, params, dropout_masks,
                                  variant_masks)
    elif train and _plain_eager((x, h0, c0, lengths, *params, *dropout_masks, *masks)):
        counts = (len(params), len(dropout_masks), *(len(ms) for ms in variant_masks))
        outputs = _EagerTrain.apply(config, precision, counts, x, h0, c0, lengths, *params, *dropout_masks, *masks)
    elif train:
        outputs = torch.ops.lstmkit.rnn_train(x, h0, c0, params, lengths, list(dropout_masks), *variant_masks, key)
    elif _undispatched((x, h0, c0, lengths, *params, *dropout_masks, *masks)):
        outputs = _inference_undispatched(config, x, h0, c0, params, lengths, list(dropout_masks), variant_masks)
    else:
        outputs = torch.ops.lstmkit.rnn(x, h0, c0, params, lengths, list(dropout_masks), *variant_masks, key)
    out, h_n, c_n = outputs[:3]
    return out, ((h_n, c_n) if config.mode == "LSTM" else (h_n,))


def _plain_eager(tensors) -> bool:
    """Plain eager mode (not compiling, exporting or tracing; no torch.func transform, torch function mode or
    dispatch mode that would expect to see the operators; no forward-mode AD) and every tensor a plain CPU
    tensor."""
    if (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._is_torch_function_mode_enabled()
            or torch._C._len_torch_dispatch_stack() or torch._C._functorch.maybe_current_level() is not None
            or devices.forward_ad()):
        return False
    return all(t is None or (type(t) in _PLAIN_TENSORS and t.is_cpu) for t in tensors)


def _undispatched(tensors) -> bool:
    """Whether a module's inference call may run ``rnn`` / ``rnn_step``'s computation directly instead of through
    torch's dispatcher: plain eager mode (_plain_eager) and nothing for autograd to record. Then the operator's
    dispatch and its second round of the module's checks are most of a small call's time (a B = 1 LSTMCell step:
    ~140 of ~170 µs); the computation is the same function either way, so are the bits."""
    grad = torch.is_grad_enabled()
    return _plain_eager(tensors) and not (grad and any(t is not None and t.requires_grad for t in tensors))


def _arrays(tensors) -> list:
    """C-contiguous NumPy views (copies only where a tensor is laid out otherwise) of CPU tensors."""
    return [None if t is None else np.ascontiguousarray(t.numpy(force=True)) for t in tensors]


def _cell_state_arrays(mode: str, B: int, H: int, dtype) -> list:
    return [np.empty((B, H), dtype) for _ in range(2 if mode == "LSTM" else 1)]


def _cell_forward(mode: str, x: Tensor, h: Tensor, c: Optional[Tensor], params: list, caches: tuple = ()) -> list:
    """``engine.cell_forward_into`` on CPU tensors: x (B, I), h and c (B, H) (c None for a GRU), params [w_ih,
    w_hh(, b_ih, b_hh)] -> the new state arrays, each (B, H); caches: () or the arrays (act, aux) to fill for
    ``engine.cell_backward_into``."""
    B, H = h.shape
    new = _cell_state_arrays(mode, B, H, _NUMPY_DTYPES[x.dtype])
    xa, ha, ca, *weights = _arrays((x, h, c, *params))
    engine.cell_forward_into(mode, xa, ha, ca, weights, new[0], new[1] if len(new) == 2 else None, *caches)
    return new


class _EagerCellStep(torch.autograd.Function):
    """A cell module's training step in plain eager mode: the engine's cell keeping its caches
    (``engine.cell_forward_into``, the inference step's arithmetic, so the same h' and c') and their backward
    (``engine.cell_backward_into``), every product reading the weights in place. The ``rnn_step`` operator's
    registered autograd (pytree flattening, two dispatches, a backward that recomputes the forward and packs three
    matrices) costs several times such a step at a small batch. Inputs: the cell's RNNConfig, x (B, I), h, c or
    None (B, H), then the parameters; outputs h', c' (B, H) (GRU: h' only)."""

    @staticmethod
    def forward(ctx, config, x, h, c, *params):
        B, H = h.shape
        dtype = _NUMPY_DTYPES[x.dtype]
        act, aux = np.empty((B, config.num_gates * H), dtype), np.empty((B, H), dtype)
        new = _cell_forward(config.mode, x, h, c, params, (act, aux))
        ctx.config = config
        ctx.save_for_backward(x, h, c, torch.from_numpy(act), torch.from_numpy(aux), *params)
        return tuple(torch.from_numpy(s) for s in new) if len(new) == 2 else torch.from_numpy(new[0])

    @staticmethod
    def backward(ctx, dh, dc=None):
        saved = ctx.saved_tensors  # read once: activation checkpointing (use_reentrant=False) allows one unpack
        x, h, c, act, aux, *params = saved
        mode = ctx.config.mode
        lstm = mode == "LSTM"
        # create_graph=True, or autograd's legacy batching of the backward: gradients as a function (torch ops)
        if _graph_wanted(0, saved, (dh, dc)):
            grads = graph_gradients(ctx.config, x, (h, c) if lstm else (h,), params, None, [], None, (None, dh, dc),
                                    cell=True)
            return None, *grads[:3 if lstm else 2], *([] if lstm else [None]), *grads[3 if lstm else 2:]
        B, H = h.shape
        dtype = _NUMPY_DTYPES[x.dtype]
        dx, d_state = np.empty(x.shape, dtype), _cell_state_arrays(mode, B, H, dtype)
        d_params = [np.empty(p.shape, dtype) for p in params]
        xa, ha, ca, dha, dca, *weights = _arrays((x, h, c, dh, dc if lstm else None, *params))
        engine.cell_backward_into(mode, xa, ha, ca, weights[:2], act.numpy(), aux.numpy(), dha, dca, dx, d_state[0],
                                  d_state[1] if lstm else None, d_params)
        d_state = [torch.from_numpy(d) for d in d_state] + ([] if lstm else [None])
        return None, torch.from_numpy(dx), *d_state, *(torch.from_numpy(d) for d in d_params)


def eager_cell_step(config: RNNConfig, x: Tensor, state: tuple, params: list) -> Optional[tuple]:
    """A cell module's common call in plain eager mode, without the general path's checks, conversions and
    dispatch (most of a B = 1 step's time): inference as ``_step_inference`` computes it (the same bits),
    training through ``_EagerCellStep``. config: the cell's one-layer RNNConfig; x (B, I), state ((h, c) or (h,),
    each (B, H)), params [w_ih, w_hh(, b_ih, b_hh)], all of one float dtype (the module checked sizes and
    dtypes) -> the new state tuple, each (B, H); None where the call is not plain eager on the CPU
    (``_plain_eager``) or the engine refuses an argument (a replaced weight's shape): the general path then
    checks and computes it, naming what is wrong."""
    tensors = (x, *state, *params)
    if not _plain_eager(tensors):
        return None
    c = state[1] if len(state) == 2 else None
    try:
        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
            new = _EagerCellStep.apply(config, x, state[0], c, *params)
            return new if c is not None else (new,)
        new = _cell_forward(config.mode, x, state[0], c, params)
    except (TypeError, ValueError):
        return None
    return tuple(torch.from_numpy(s) for s in new)


def step(config: RNNConfig, key: str, x: Tensor, state: tuple, params: list) -> tuple:
    """One step through ``rnn_step``: x (B, I), state (h (L, B, P)[, c (L, B, H)]) -> the new state tuple."""
    h0, c0 = state[0], (state[1] if config.mode == "LSTM" else None)
    if _under_torch_func():
        h, c = _functorch_call("rnn_step", key, x, h0, c0, None, params)
    elif _undispatched((x, h0, c0, *params)):
        _check_params(config, params, x.dtype)  # (a module's attribute may have been replaced)
        h, c = _step_inference(config, x, h0, c0, params)
    else:
        h, c = torch.ops.lstmkit.rnn_step(x, h0, c0, params, key)
    return (h, c) if config.mode == "LSTM" else (h,)
