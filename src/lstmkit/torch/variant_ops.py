"""The LSTM/GRU variants (docs/variants.md) as torch custom operators, with autograd and fake kernels.

``torch.ops.lstmkit.variant_rnn(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c,
mask_zoneout_h, config) -> (output, h_n, c_n)``
    x (T, B, I) sequence-first; h0 (L·D, B, P); c0 (L·D, B, H) for an LSTM, None for a GRU; params in
    ``param_shapes(config)`` order (the plain weights and the variant ones: peephole, ln_*);
    lengths None or (B,) int64; dropout_masks [] or L − 1 inter-layer masks (T, B, D·P);
    mask_recurrent [] or L·D masks (B, P); mask_zoneout_c [] or L·D masks (T, B, H) (LSTM);
    mask_zoneout_h [] or L·D masks (T, B, P) — all three empty means evaluation (zoneout by its
    expectation, no recurrent dropout); config: ``config_key(config)``, the RNNConfig as JSON.
    Returns output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H) (a GRU: an empty tensor).
``torch.ops.lstmkit.variant_rnn_train(x, h0, c0, params, lengths, mask_recurrent, mask_zoneout_c,
mask_zoneout_h, config) -> (output, h_n, c_n, workspace)``
    ``variant_rnn`` on the native engine without inter-layer dropout, for training: plus the engine's
    workspace (1-D, ``lstmkit.engine.workspace_size(config, T, B, bool(mask_recurrent))`` values, not
    differentiable), which autograd saves so that the backward does not recompute the forward.
``torch.ops.lstmkit.variant_rnn_backward(..., workspace, grad_output, grad_h_n, grad_c_n, config)
-> [dx, dh0, (dc0), *dparams]``
    The backward of both, an operator of its own for the same reason as ``lstmkit::rnn_backward``
    (ops.py); workspace is ``variant_rnn_train``'s, or None to recompute the forward.

The computation is the native engine's variant kernels when it supports the config
(``engine.supports``), with inter-layer dropout masks one layer at a time
(``engine.layered_train_forward``), else the NumPy reference.
"""
from __future__ import annotations

import functools
import json
from typing import Optional

import numpy as np
import torch

from .. import checks, engine
from ..params import RNNConfig, param_shapes
from ..ref import rnn as ref_rnn
from ..ref.variants import VariantMasks
from .ops import _check_args, _np, _numpy_args, _to_torch, graph_gradients

__all__ = ["variant_rnn", "variant_rnn_train", "variant_rnn_backward", "config_key"]

Tensor = torch.Tensor


def config_key(config: RNNConfig) -> str:
    """The config as the JSON string the operators take (sequence-first, no dropout rate: masks carry it)."""
    d = config.to_dict()
    d.update(batch_first=False, dropout=0.0)
    return json.dumps(d, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _config(key: str) -> RNNConfig:
    return RNNConfig(**json.loads(key))


def _checked(config, x, h0, c0, params, lengths, dropout_masks, m_rd, m_zc, m_zh):
    T, B = _check_args(config, x, h0, c0, params, lengths, dropout_masks)
    checks.check_variant_masks(config, T, B, x.dtype, dict(recurrent=m_rd, zoneout_c=m_zc, zoneout_h=m_zh), "mask_")
    return T, B


def _masks_np(m_rd, m_zc, m_zh) -> Optional[VariantMasks]:
    if not (m_rd or m_zc or m_zh):
        return None  # evaluation
    return VariantMasks([_np(m) for m in m_rd] or None, [_np(m) for m in m_zc] or None,
                        [_np(m) for m in m_zh] or None)


def _native(config, dropout_masks) -> bool:
    return not dropout_masks and engine.supports(config)


@torch.library.custom_op("lstmkit::variant_rnn", mutates_args=())
def variant_rnn(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], lengths: Optional[Tensor],
                dropout_masks: list[Tensor], mask_recurrent: list[Tensor], mask_zoneout_c: list[Tensor],
                mask_zoneout_h: list[Tensor], config: str) -> tuple[Tensor, Tensor, Tensor]:
    """A variant LSTM/GRU over x (T, B, I) -> (output (T, B, D·P), h_n (L·D, B, P), c_n (L·D, B, H) or empty)."""
    cfg = _config(config)
    _checked(cfg, x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    params_np, x_np, state0, lengths_np, drop = _numpy_args(cfg, x, h0, c0, params, lengths, dropout_masks)
    masks = _masks_np(mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    if _native(cfg, dropout_masks):
        output, final = engine.forward(cfg, params_np, x_np, state0, lengths_np, masks)
    elif engine.supports(cfg):  # inter-layer dropout: one layer at a time, the masks between
        output, final, _ = engine.layered_train_forward(cfg, params_np, x_np, state0, lengths_np, drop, masks,
                                                        keep_tape=False)
    else:
        output, final, _ = ref_rnn.forward(cfg, params_np, x_np, state0, lengths_np, drop, masks)
    c_n = _to_torch(final[1], x) if cfg.mode == "LSTM" else x.new_empty(0)
    return _to_torch(output, x), _to_torch(final[0], x), c_n


@variant_rnn.register_fake
def _variant_rnn_fake(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h,
                      config):
    cfg = _config(config)
    T, B = _checked(cfg, x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    K = cfg.num_layers * cfg.num_directions
    c_n = x.new_empty((K, B, cfg.hidden_size)) if cfg.mode == "LSTM" else x.new_empty(0)
    return x.new_empty((T, B, cfg.num_directions * cfg.output_size)), x.new_empty((K, B, cfg.output_size)), c_n


def _fake_workspace(cfg, x, mask_recurrent):
    return x.new_empty((engine.workspace_size(cfg, x.shape[0], x.shape[1], bool(mask_recurrent)),))


@torch.library.custom_op("lstmkit::variant_rnn_train", mutates_args=())
def variant_rnn_train(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor], lengths: Optional[Tensor],
                      mask_recurrent: list[Tensor], mask_zoneout_c: list[Tensor], mask_zoneout_h: list[Tensor],
                      config: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``variant_rnn`` natively for training -> (output, h_n, c_n or empty, workspace)."""
    cfg = _config(config)
    _checked(cfg, x, h0, c0, params, lengths, [], mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    params_np, x_np, state0, lengths_np, _ = _numpy_args(cfg, x, h0, c0, params, lengths, [])
    masks = _masks_np(mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    output, final, workspace = engine.train_forward(cfg, params_np, x_np, state0, lengths_np, masks)
    c_n = _to_torch(final[1], x) if cfg.mode == "LSTM" else x.new_empty(0)
    return _to_torch(output, x), _to_torch(final[0], x), c_n, torch.from_numpy(workspace).to(x.device)


@variant_rnn_train.register_fake
def _variant_rnn_train_fake(x, h0, c0, params, lengths, mask_recurrent, mask_zoneout_c, mask_zoneout_h, config):
    outputs = _variant_rnn_fake(x, h0, c0, params, lengths, [], mask_recurrent, mask_zoneout_c, mask_zoneout_h,
                                config)
    return (*outputs, _fake_workspace(_config(config), x, mask_recurrent))


@torch.library.custom_op("lstmkit::variant_rnn_backward", mutates_args=())
def variant_rnn_backward(x: Tensor, h0: Tensor, c0: Optional[Tensor], params: list[Tensor],
                         lengths: Optional[Tensor], dropout_masks: list[Tensor], mask_recurrent: list[Tensor],
                         mask_zoneout_c: list[Tensor], mask_zoneout_h: list[Tensor], workspace: Optional[Tensor],
                         grad_output: Optional[Tensor], grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor],
                         config: str) -> list[Tensor]:
    """Gradients of ``variant_rnn`` / ``variant_rnn_train`` -> [dx, dh0, (dc0), *dparams in param_shapes
    order]; a None gradient is zeros; workspace: ``variant_rnn_train``'s, or None (recompute the forward)."""
    cfg = _config(config)
    _checked(cfg, x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    params_np, x_np, state0, lengths_np, drop = _numpy_args(cfg, x, h0, c0, params, lengths, dropout_masks)
    masks = _masks_np(mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    shapes = checks.state_shapes(cfg, x_np.shape[1])
    d_out = np.zeros(x_np.shape[:2] + (cfg.num_directions * cfg.output_size,), x_np.dtype)
    if grad_output is not None:
        d_out = _np(grad_output)
    finals = (grad_h_n, grad_c_n) if cfg.mode == "LSTM" else (grad_h_n,)
    d_final = tuple(np.zeros(s, x_np.dtype) if g is None or g.numel() == 0 else _np(g) for s, g in zip(shapes, finals))
    if _native(cfg, dropout_masks):
        dx, d_state0, grads = engine.backward(cfg, params_np, x_np, d_out, d_final, state0, lengths_np, masks,
                                              workspace=None if workspace is None else _np(workspace))
    elif engine.supports(cfg):  # inter-layer dropout: the forward recomputed natively, layer by layer
        _, _, tape = engine.layered_train_forward(cfg, params_np, x_np, state0, lengths_np, drop, masks)
        dx, d_state0, grads = engine.layered_backward(tape, d_out, d_final)
    else:
        _, _, cache = ref_rnn.forward(cfg, params_np, x_np, state0, lengths_np, drop, masks)
        dx, d_state0, grads = ref_rnn.backward(cache, d_out, d_final)
    result = [dx, *d_state0, *(grads[name] for name in param_shapes(cfg))]
    return [_to_torch(np.asarray(g, dtype=x_np.dtype), x) for g in result]


@variant_rnn_backward.register_fake
def _variant_rnn_backward_fake(x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c,
                               mask_zoneout_h, workspace, grad_output, grad_h_n, grad_c_n, config):
    cfg = _config(config)
    _checked(cfg, x, h0, c0, params, lengths, dropout_masks, mask_recurrent, mask_zoneout_c, mask_zoneout_h)
    states = (h0, c0) if cfg.mode == "LSTM" else (h0,)
    return [x.new_empty(x.shape), *(s.new_empty(s.shape) for s in states), *(p.new_empty(p.shape) for p in params)]


def _setup_context(ctx, inputs, output):
    x, h0, c0, params, lengths, dropout_masks, m_rd, m_zc, m_zh, config = inputs
    ctx.config = config
    ctx.counts = (len(params), len(dropout_masks), len(m_rd), len(m_zc), len(m_zh))
    ctx.save_for_backward(x, h0, c0, lengths, None, *params, *dropout_masks, *m_rd, *m_zc, *m_zh)


def _setup_train_context(ctx, inputs, output):
    x, h0, c0, params, lengths, m_rd, m_zc, m_zh, config = inputs
    workspace = output[-1]
    ctx.mark_non_differentiable(workspace)
    ctx.config = config
    ctx.counts = (len(params), 0, len(m_rd), len(m_zc), len(m_zh))
    ctx.save_for_backward(x, h0, c0, lengths, workspace, *params, *m_rd, *m_zc, *m_zh)


def _gradients(ctx, grad_output, grad_h_n, grad_c_n):
    """[dx, dh0, dc0 (None for a GRU), dparams list, the mask lists' (all None)] from the saved tensors."""
    x, h0, c0, lengths, workspace, *rest = ctx.saved_tensors
    lists, start = [], 0
    for n in ctx.counts:
        lists.append(list(rest[start:start + n]))
        start += n
    params, dropout_masks, m_rd, m_zc, m_zh = lists
    lstm = c0 is not None
    if torch.is_grad_enabled():  # create_graph=True: gradients autograd can differentiate again (ops.py)
        masks = None if not (m_rd or m_zc or m_zh) else VariantMasks(m_rd or None, m_zc or None, m_zh or None)
        grads = graph_gradients(_config(ctx.config), x, (h0, c0) if lstm else (h0,), params, lengths, dropout_masks,
                                masks, (grad_output, grad_h_n, grad_c_n if lstm else None))
    else:
        grads = torch.ops.lstmkit.variant_rnn_backward(x, h0, c0, params, lengths, dropout_masks, m_rd, m_zc, m_zh,
                                                       workspace, grad_output, grad_h_n, grad_c_n if lstm else None,
                                                       ctx.config)
    n_states = 2 if lstm else 1
    dx, d_states, d_params = grads[0], grads[1:1 + n_states], grads[1 + n_states:]
    dc0 = d_states[1] if lstm else None
    return dx, d_states[0], dc0, list(d_params), [[None] * n for n in ctx.counts[1:]]


def _backward(ctx, grad_output, grad_h_n, grad_c_n):
    dx, dh0, dc0, d_params, (d_drop, d_rd, d_zc, d_zh) = _gradients(ctx, grad_output, grad_h_n, grad_c_n)
    # lengths, every mask list (structure must match the inputs') and the config get no gradient
    return dx, dh0, dc0, d_params, None, d_drop, d_rd, d_zc, d_zh, None


def _train_backward(ctx, grad_output, grad_h_n, grad_c_n, _grad_workspace):
    dx, dh0, dc0, d_params, (_, d_rd, d_zc, d_zh) = _gradients(ctx, grad_output, grad_h_n, grad_c_n)
    return dx, dh0, dc0, d_params, None, d_rd, d_zc, d_zh, None


variant_rnn.register_autograd(_backward, setup_context=_setup_context)
variant_rnn_train.register_autograd(_train_backward, setup_context=_setup_train_context)
