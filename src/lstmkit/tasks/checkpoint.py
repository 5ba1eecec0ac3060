"""Checkpoints: one safetensors file holding model weights, optimizer tensors and RNG states, with the
task's config and the trainer's counters as JSON in its metadata. Written atomically (temp file in the
same folder, fsync, os.replace, via ``lstmkit.io.files.atomic_write``), so a crash (even ``kill -9``) never
leaves a half-written checkpoint behind. Under DDP only rank 0 calls :func:`save` (see training.fit).

Tensor keys: ``model.<name>`` (the state_dict), ``optim.<param index>.<name>`` (per-parameter optimizer
state such as Adam's ``exp_avg``), ``rng.torch`` (torch's CPU generator state, uint8) and
``rng.loader`` (the batch-order generator). Metadata keys: ``lstmkit`` (format version), ``task``,
``config`` (JSON), ``optim`` (JSON: param_groups and per-parameter non-tensor state), ``trainer``
(JSON: epoch, best, history ...), ``rng.python`` and ``rng.numpy`` (JSON).
"""
from __future__ import annotations

import json
import os
import random

import numpy as np

from .._optional import require

FORMAT = "1"


def _atomic_save(tensors: dict, metadata: dict, path: str) -> None:
    """safetensors file written through ``lstmkit.io.files.atomic_write`` (temp file, fsync, os.replace)."""
    from ..io.files import atomic_write

    st = require("safetensors.torch", "tasks")
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: st.save_file(cpu, tmp, metadata=metadata), overwrite=True)


def _split_optimizer(optimizer) -> tuple[dict, dict]:
    """Optimizer state_dict -> (tensors by key, JSON-able rest)."""
    import torch

    sd = optimizer.state_dict()
    tensors, state = {}, {}
    for idx, pstate in sd["state"].items():
        state[str(idx)] = {}
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                state[str(idx)][name] = value
    return tensors, {"param_groups": sd["param_groups"], "state": state}


def _join_optimizer(tensors: dict, rest: dict) -> dict:
    state = {int(i): dict(v) for i, v in rest["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save(path: str, *, task: str, config: dict, model, optimizer=None, trainer: dict | None = None,
         loader_generator=None) -> None:
    """Write ``path`` atomically: weights, optimizer, RNG states (torch, loader, numpy, python), config."""
    import torch

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {"lstmkit": FORMAT, "task": task, "config": json.dumps(config)}
    if optimizer is not None:
        otensors, orest = _split_optimizer(optimizer)
        tensors.update(otensors)
        meta["optim"] = json.dumps(orest)
    if trainer is not None:
        meta["trainer"] = json.dumps(trainer)
    tensors["rng.torch"] = torch.get_rng_state()
    if loader_generator is not None:
        tensors["rng.loader"] = loader_generator.get_state()
    meta["rng.python"] = json.dumps(_py_state_to_json(random.getstate()))
    meta["rng.numpy"] = json.dumps(_np_state_to_json(np.random.get_state()))
    _atomic_save(tensors, meta, path)


def load(path: str, task: str | None = None) -> dict:
    """Read a checkpoint: {'task', 'config', 'model' (state_dict), 'optim' (state_dict or None),
    'trainer' (dict or None), 'tensors' (all raw tensors), 'meta'}. With ``task``, a checkpoint of
    another task is refused (ValueError naming both)."""
    st = require("safetensors.torch", "tasks")
    safe = require("safetensors", "tasks")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    tensors = st.load_file(path)
    with safe.safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("lstmkit") != FORMAT:
        raise ValueError(f"{path} is not an lstmkit checkpoint (format {meta.get('lstmkit')!r})")
    if task is not None and meta.get("task") != task:
        raise ValueError(f"{path} holds a {meta.get('task')} model, not a {task} model")
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optim = _join_optimizer(tensors, json.loads(meta["optim"])) if "optim" in meta else None
    return {"task": meta["task"], "config": json.loads(meta["config"]), "model": model, "optim": optim,
            "trainer": json.loads(meta["trainer"]) if "trainer" in meta else None, "tensors": tensors, "meta": meta}


def restore_rng(ckpt: dict, loader_generator=None) -> None:
    """Put torch's, the loader's, NumPy's and Python's RNGs back where the checkpoint left them."""
    import torch

    torch.set_rng_state(ckpt["tensors"]["rng.torch"])
    if loader_generator is not None and "rng.loader" in ckpt["tensors"]:
        loader_generator.set_state(ckpt["tensors"]["rng.loader"])
    random.setstate(_py_state_from_json(json.loads(ckpt["meta"]["rng.python"])))
    np.random.set_state(_np_state_from_json(json.loads(ckpt["meta"]["rng.numpy"])))


def _py_state_to_json(state):
    return [state[0], list(state[1]), state[2]]


def _py_state_from_json(state):
    return (state[0], tuple(state[1]), state[2])


def _np_state_to_json(state):
    return [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]


def _np_state_from_json(state):
    return (state[0], np.array(state[1], dtype=np.uint32), state[2], state[3], state[4])
