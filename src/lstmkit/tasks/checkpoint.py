"""Checkpoints: one safetensors file holding model weights, optimizer tensors and RNG states, with the
task's config and the trainer's counters as JSON in its metadata. Written atomically (temp file in the
same folder, fsync, os.replace, via ``lstmkit.io.files.atomic_write``), so a crash (even ``kill -9``) never
leaves a half-written checkpoint behind. Under DDP only rank 0 calls :func:`save` (see training.fit).

Tensor keys: ``model.<name>`` (the state_dict), ``optim.<param index>.<name>`` (per-parameter optimizer
state such as Adam's ``exp_avg``), ``rng.torch`` (torch's CPU generator state, uint8; rank 0's under DDP),
``rng.torch.<r>`` (DDP rank r's, r >= 1) and ``rng.loader`` (the batch-order generator). Metadata keys:
``lstmkit`` (format version), ``task``, ``config`` (JSON), ``rnn_configs`` (JSON: the lstmkit.torch recurrent
layers' configs by state_dict prefix, where the model has any), ``optim`` (JSON: param_groups and per-parameter
non-tensor state), ``trainer`` (JSON: epoch, best, history ...), ``rng.ranks`` (how many ranks' torch states it
holds), ``rng.python`` and ``rng.numpy`` (JSON, rank 0's), and the two hashes of ``lstmkit.io.safetensors``
(``content_sha256`` over every tensor, ``metadata_sha256`` over the rest of the metadata), checked by
:func:`load`: one flipped bit, or an edited trainer/optimizer entry, is refused instead of resuming or
predicting with it. Format 1 (before the hashes) loads only with ``verify=False``.
"""
from __future__ import annotations

import json
import os
import random
import re

import numpy as np

from .._optional import require
from ..io.files import short

FORMAT = "2"  # 2: content_sha256 and metadata_sha256 added


def _atomic_save(tensors: dict, metadata: dict, path: str) -> None:
    """safetensors file written through ``lstmkit.io.files.atomic_write`` (temp file, fsync, os.replace)."""
    from ..io.files import atomic_write

    from ..io.safetensors import stamp_hashes

    st = require("safetensors.torch", "tasks")
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    stamp_hashes(metadata, {k: v.numpy() for k, v in cpu.items()})
    atomic_write(path, lambda tmp: _save_file(st, cpu, tmp, metadata, path), overwrite=True)


def _save_file(st, tensors: dict, tmp: str, metadata: dict, path: str) -> None:
    """safetensors' save_file to ``tmp``, its I/O failures raised as the OSError they are (naming ``path``, the
    checkpoint being written, not the temp file that is removed).

    safetensors reports a full disk as SafetensorError("... I/O error: No space left on device (os error 28)")
    (0.4 wrote "Os { code: 28, ... }"), an Exception the CLI could only call an internal error; as OSError(28)
    it gets exit status 3 and the ENOSPC hint, like any other write. atomic_write removes the temp file, so
    the previous checkpoint stays whole.
    """
    from safetensors import SafetensorError

    try:
        st.save_file(tensors, tmp, metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"(?:os error|code:) (\d+)", str(e))
        if code is None:  # not an I/O failure: a bug to report, left as it is
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number), path) from e


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
         loader_generator=None, rank_rngs: list | None = None) -> None:
    """Write ``path`` atomically: weights, optimizer, RNG states (torch, loader, numpy, python), config.
    ``rank_rngs``: the torch CPU generator states of every DDP rank, rank 0's first (None: this process's)."""
    import torch

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {"lstmkit": FORMAT, "task": task, "config": json.dumps(config)}
    layers = recurrent_configs(model)
    if layers:
        meta["rnn_configs"] = json.dumps(layers)
    if optimizer is not None:
        otensors, orest = _split_optimizer(optimizer)
        tensors.update(otensors)
        meta["optim"] = json.dumps(orest)
    if trainer is not None:
        meta["trainer"] = json.dumps(trainer)
    rank_rngs = [torch.get_rng_state()] if not rank_rngs else rank_rngs
    tensors["rng.torch"] = rank_rngs[0]
    for r, rng in enumerate(rank_rngs[1:], 1):  # each rank draws its own dropout masks: resume gives them back
        tensors[f"rng.torch.{r}"] = rng
    meta["rng.ranks"] = str(len(rank_rngs))
    if loader_generator is not None:
        tensors["rng.loader"] = loader_generator.get_state()
    meta["rng.python"] = json.dumps(_py_state_to_json(random.getstate()))
    meta["rng.numpy"] = json.dumps(_np_state_to_json(np.random.get_state()))
    _atomic_save(tensors, meta, path)


def recurrent_configs(model) -> dict:
    """{state_dict prefix ("rnn."): RNNConfig.to_dict()} of the lstmkit.torch recurrent layers inside ``model``:
    their options, those without tensors too (zoneout, recurrent dropout, clip, ...), which the weights' names and
    shapes cannot tell. ``lstmkit.load`` builds a task checkpoint's recurrent layer from them (metadata key
    ``rnn_configs``), so report, explain and trace run the cell the model trained."""
    from ..params import RNNConfig

    return {f"{name}." if name else "": m.config.to_dict() for name, m in model.named_modules()
            if isinstance(getattr(m, "config", None), RNNConfig)}


def load(path: str, task: str | None = None, *, verify: bool = True) -> dict:
    """Read a checkpoint: {'task', 'config', 'model' (state_dict), 'optim' (state_dict or None),
    'trainer' (dict or None), 'tensors' (all raw tensors), 'meta'}. With ``task``, a checkpoint of
    another task is refused (ValueError naming both). ValueError naming the file for anything truncated,
    malformed, damaged (hash mismatch) or without hashes (unless ``verify=False``)."""
    import torch

    from ..io.safetensors import read, verify_hashes

    meta, arrays = read(path, verify=False)  # checks the structure; the hashes below, once the format is known
    version = meta.get("lstmkit")
    if version not in (FORMAT, "1"):
        raise ValueError(f"{path} is not an lstmkit checkpoint (format {short(version, 20)!r})")
    if verify and version == "1":
        raise ValueError(f"{path}: a format-1 checkpoint (older lstmkit) has no content hash; load it with "
                         "verify=False if you trust it")
    if verify:
        verify_hashes(path, meta, arrays)
    if task is not None and meta.get("task") != task:
        raise ValueError(f"{path} holds a {short(meta.get('task'), 40)} model, not a {task} model")
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    config = _field(path, meta, "config", dict)
    trainer = _field(path, meta, "trainer", dict) if "trainer" in meta else None
    optim = None
    if "optim" in meta:
        rest = _field(path, meta, "optim", dict)
        try:
            optim = _join_optimizer(tensors, rest)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"{path}: metadata 'optim' is malformed ({type(e).__name__}: {short(e, 120)})") from None
    return {"task": meta.get("task"), "config": config, "model": model, "optim": optim, "trainer": trainer,
            "tensors": tensors, "meta": meta}


def _field(path, meta: dict, key: str, kind: type):
    """meta[key] parsed as JSON of type ``kind``; ValueError naming the file and key otherwise."""
    from ..io.safetensors import json_field

    return json_field(path, meta, key, kind, where="checkpoint's metadata")


def resume_into(ck: dict, path: str, model, optimizer, loader_generator=None, config: dict | None = None,
                rank: int = 0) -> bool:
    """Load a ``last`` checkpoint into ``model``, ``optimizer`` and the RNGs (torch's: ``rank``'s, see
    :func:`restore_rng`, whose answer it returns); ValueError naming what differs when it was written by a run
    of another shape (another --hidden-size, --cell, input length ...)."""
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ck["model"].items()}
    if mine != theirs:
        current = config or {}
        saved = ck.get("config") or {}
        differ = {k: (saved.get(k), current.get(k)) for k in sorted(set(saved) | set(current))
                  if saved.get(k) != current.get(k) and not isinstance(saved.get(k), (list, dict))}
        hint = f" (saved vs now: {short(differ, 200)})" if differ else ""
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"--resume: {path} holds a model of another shape{hint}: {short(changed, 160)} differ; "
                         "resume with the flags of the run that wrote it, or start a new --out")
    try:
        model.load_state_dict(ck["model"])
        if ck["optim"] is None or ck["trainer"] is None:
            raise ValueError("it holds no optimizer or trainer state (a best/model checkpoint, not last)")
        optimizer.load_state_dict(ck["optim"])
        return restore_rng(ck, loader_generator, rank)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, RecursionError) as e:
        raise ValueError(f"--resume: {path} cannot be resumed: {short(e, 300)}") from None


def saved_ranks(ckpt: dict) -> int:
    """How many processes' torch RNG states the checkpoint holds (1 before per-rank states were saved)."""
    try:
        return max(int(ckpt["meta"].get("rng.ranks", "1")), 1)
    except ValueError:
        return 1


def restore_rng(ckpt: dict, loader_generator=None, rank: int = 0) -> bool:
    """Put torch's, the loader's, NumPy's and Python's RNGs back where the checkpoint left them. Torch's: the
    state of DDP rank ``rank`` when the checkpoint holds it (-> True), else rank 0's (-> False: the caller
    derives a rank's own stream from it). NumPy's and Python's are rank 0's on every rank."""
    import torch

    own = ckpt["tensors"].get("rng.torch" if rank == 0 else f"rng.torch.{rank}")
    torch.set_rng_state(ckpt["tensors"]["rng.torch"] if own is None else own)
    if loader_generator is not None and "rng.loader" in ckpt["tensors"]:
        loader_generator.set_state(ckpt["tensors"]["rng.loader"])
    random.setstate(_py_state_from_json(json.loads(ckpt["meta"]["rng.python"])))
    np.random.set_state(_np_state_from_json(json.loads(ckpt["meta"]["rng.numpy"])))
    return own is not None


def _py_state_to_json(state):
    return [state[0], list(state[1]), state[2]]


def _py_state_from_json(state):
    return (state[0], tuple(state[1]), state[2])


def _np_state_to_json(state):
    return [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]


def _np_state_from_json(state):
    return (state[0], np.array(state[1], dtype=np.uint32), state[2], state[3], state[4])
