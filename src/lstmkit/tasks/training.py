"""The shared training loop: mini-batches, Adam, gradient clipping, a tqdm bar with loss and ETA, early
stopping on a validation split, a checkpoint every epoch and a bit-identical ``resume``.

Every task supplies ``loss_fn(model, *batch) -> scalar tensor`` and its data as tuples of tensors whose
first dimension indexes examples (N, ...). Determinism: ``seed_everything`` seeds Python, NumPy and torch;
batch order comes from a dedicated ``torch.Generator`` whose state is checkpointed with the others, so an
interrupted run resumed from ``last.safetensors`` takes exactly the steps the uninterrupted run takes.
"""
from __future__ import annotations

import copy
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import checkpoint

LAST, BEST = "last.safetensors", "best.safetensors"


@dataclass
class TrainConfig:
    """Optimisation settings shared by every task.

    batches_per_epoch: if set, each epoch draws this many random batches (for tasks with far more
    examples than an epoch can afford, e.g. forecasting windows); otherwise one pass over the data.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.0
    patience: int = 6
    clip: float = 1.0
    seed: int = 0
    batches_per_epoch: int | None = None
    progress: bool = True


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batches(n: int, cfg: TrainConfig, gen):
    """Index tensors for one epoch, drawn with ``gen``."""
    import torch

    perm = torch.randperm(n, generator=gen)
    if cfg.batches_per_epoch is not None:
        need = cfg.batches_per_epoch * cfg.batch_size
        reps = math.ceil(need / n)
        perm = torch.cat([perm] + [torch.randperm(n, generator=gen) for _ in range(reps - 1)])[:need]
    return [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]


def evaluate_loss(model, loss_fn, data: tuple, batch_size: int) -> float:
    """Mean of ``loss_fn`` over ``data`` in eval mode, weighted by batch size."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    n = len(data[0])
    with torch.no_grad():
        for i in range(0, n, batch_size):
            batch = tuple(t[i:i + batch_size] for t in data)
            total += float(loss_fn(model, *batch)) * len(batch[0])
            count += len(batch[0])
    model.train(was_training)
    return total / max(count, 1)


def fit(model, loss_fn, train: tuple, val: tuple | None, cfg: TrainConfig, *, task: str, config: dict,
        ckpt_dir: str | None = None, resume: bool = False, log=print) -> dict:
    """Train ``model`` in place and leave it holding the weights of its best validation epoch.

    train, val: tuples of tensors (N, ...) passed batch-wise to ``loss_fn(model, *batch)``; val None
    means no early stopping (the last epoch is kept). With ``ckpt_dir``, ``last.safetensors`` (full state)
    and ``best.safetensors`` (best weights) are written there every epoch; ``resume=True`` continues from
    ``last.safetensors`` bit-identically. ``config`` (JSON-able) is stored in every checkpoint so
    ``lstmkit predict`` can rebuild the model. Returns {'history': [...], 'best_epoch', 'stopped_early'}.
    """
    import torch

    tqdm = _tqdm()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "stopped_early": False, "train": asdict(cfg)}
    best_weights = copy.deepcopy(model.state_dict())
    if resume:
        if ckpt_dir is None or not os.path.isfile(os.path.join(ckpt_dir, LAST)):
            raise FileNotFoundError(f"--resume: no {LAST} in {ckpt_dir}")
        ck = checkpoint.load(os.path.join(ckpt_dir, LAST))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        checkpoint.restore_rng(ck, gen)
        state.update({k: v for k, v in ck["trainer"].items() if k != "train"})
        best_weights = checkpoint.load(os.path.join(ckpt_dir, BEST))["model"] if state["best_epoch"] else best_weights
        log(f"resumed from {os.path.join(ckpt_dir, LAST)} after epoch {state['epoch']}")
    if ckpt_dir is not None:
        os.makedirs(ckpt_dir, exist_ok=True)
    n = len(train[0])
    per_epoch = len(_batches(n, cfg, torch.Generator().manual_seed(0)))
    remaining = 0 if state["stopped_early"] else max(cfg.epochs - state["epoch"], 0)
    bar = tqdm(total=remaining * per_epoch, disable=not cfg.progress, file=sys.stderr, unit="batch",
               dynamic_ncols=True, leave=False)
    try:
        while not state["stopped_early"] and state["epoch"] < cfg.epochs:
            start = time.perf_counter()
            model.train()
            losses = []
            for idx in _batches(n, cfg, gen):
                loss = loss_fn(model, *(t[idx] for t in train))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(epoch=state["epoch"] + 1, loss=f"{losses[-1]:.4f}")
            state["epoch"] += 1
            train_loss = float(np.mean(losses))
            val_loss = evaluate_loss(model, loss_fn, val, max(cfg.batch_size, 256)) if val is not None else train_loss
            improved = val_loss < state["best"]
            if improved:
                state.update(best=val_loss, best_epoch=state["epoch"], bad_epochs=0)
                best_weights = copy.deepcopy(model.state_dict())
            else:
                state["bad_epochs"] += 1
                if val is not None and state["bad_epochs"] >= cfg.patience:
                    state["stopped_early"] = True
            state["history"].append({"epoch": state["epoch"], "train_loss": train_loss, "val_loss": val_loss,
                                     "seconds": round(time.perf_counter() - start, 3)})
            if ckpt_dir is not None:
                if improved:
                    checkpoint.save(os.path.join(ckpt_dir, BEST), task=task, config=config, model=model)
                checkpoint.save(os.path.join(ckpt_dir, LAST), task=task, config=config, model=model, optimizer=opt,
                                trainer=state, loader_generator=gen)
            msg = (f"epoch {state['epoch']:3d}  train {train_loss:.4f}  val {val_loss:.4f}"
                   f"{'  *' if improved else ''}  ({time.perf_counter() - start:.1f}s)")
            if cfg.progress:
                bar.write(msg, file=sys.stderr)
            else:
                log(msg)
            if state["stopped_early"]:
                log(f"early stop after epoch {state['epoch']}: no val improvement for {cfg.patience} epochs")
    finally:
        bar.close()
    model.load_state_dict(best_weights)
    model.eval()
    return {"history": state["history"], "best_epoch": state["best_epoch"], "stopped_early": state["stopped_early"],
            "best_val_loss": state["best"]}


def _tqdm():
    from .._optional import require

    return require("tqdm", "tasks").tqdm
