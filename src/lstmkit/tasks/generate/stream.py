"""Training a char LM as one stream, for a fixed number of steps or a wall-clock budget.

The text is cut into ``batch_size`` contiguous streams read side by side, ``seq_len`` characters per step,
the state carried from step to step (truncated BPTT: gradients stop at the step boundary, the memory does
not), so the model learns to use context longer than one chunk and every character is read once per pass.
AdamW, gradient-norm clipping, a linear warm-up then a cosine decay over the run's progress (the larger of
steps done / ``steps`` and time spent / ``time_budget``), validation bits/char every ``eval_every`` steps and
at the end, and the best validated weights kept (written to ``best.safetensors`` when a folder is given).

Under torchrun (WORLD_SIZE > 1) the same call trains data-parallel, as ``training.fit`` does: the ``batch_size``
streams are the global batch, rank r reads rows r, r + N, ... (its state stays with its rows), the model is
wrapped in DistributedDataParallel and each rank's loss weighed by its share of the rows, so N processes take one
process's steps; rank 0's clock decides the schedule and the stop (--time-budget: the ranks stop together), rank 0
alone validates (its bits/char broadcast), logs and writes the checkpoint.
"""
from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from .. import checkpoint, distributed
from ..training import seed_rank_rng


@dataclass
class StreamConfig:
    """steps: optimisation steps at most (None: no limit); time_budget: seconds at most, evaluations included
    (None: no limit); at least one of the two must be set. warmup: steps of linear warm-up; min_lr: the
    decay's floor as a fraction of ``lr``; eval_every: steps between validations."""

    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    clip: float = 1.0
    warmup: int = 50
    min_lr: float = 0.02
    steps: int | None = None
    time_budget: float | None = None
    eval_every: int = 100
    seed: int = 0

    def check(self) -> None:
        """ValueError naming the first bad field."""
        for name in ("batch_size", "seq_len", "eval_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if self.steps is None and self.time_budget is None:
            raise ValueError("steps, time_budget: expected at least one of them, got neither")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps: expected a positive integer, got {self.steps!r}")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ValueError(f"time_budget: expected a positive number of seconds, got {self.time_budget!r}")
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup: expected an integer >= 0, got {self.warmup!r}")
        if not 0 <= self.min_lr <= 1:
            raise ValueError(f"min_lr: expected a fraction of lr in [0, 1], got {self.min_lr!r}")

    def progress(self, step: int, elapsed: float) -> float:
        """How far the run is, in [0, 1]: the larger of the step and the time fractions."""
        done = 0.0
        if self.steps is not None:
            done = step / self.steps
        if self.time_budget is not None:
            done = max(done, elapsed / self.time_budget)
        return min(done, 1.0)

    def lr_at(self, step: int, progress: float) -> float:
        """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``min_lr·lr`` as progress goes 0 -> 1."""
        cosine = self.min_lr + (1 - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * cosine * min(1.0, (step + 1) / (self.warmup + 1))


def streams(ids: np.ndarray, batch_size: int):
    """(n,) ids -> (batch_size, n // batch_size) int64 tensor: contiguous parts of the text, one per row."""
    import torch

    per = len(ids) // batch_size
    if per < 2:
        raise ValueError(f"batch_size: {batch_size} streams need at least {2 * batch_size} characters of training "
                         f"text, got {len(ids)}")
    return torch.from_numpy(np.ascontiguousarray(ids[:per * batch_size].reshape(batch_size, per)))


def _detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def _main_clock(start: float) -> float:
    """Seconds since ``start`` on rank 0's clock, on every rank: the schedule and the time budget's stop follow
    it, so the ranks take the same learning rates and stop at the same step."""
    import torch

    elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
    return float(distributed.broadcast_tensor(elapsed)[0])


def _global_mean(value: float, fraction: float) -> float:
    """The global batch's mean loss from this rank's mean ``value`` over its ``fraction`` of the rows (NaN when
    any rank's is not finite, so every rank stops)."""
    if not distributed.active():
        return value
    finite = math.isfinite(value)
    sums = distributed.all_reduce_sum([value * fraction if finite else 0.0, 0.0 if finite else 1.0])
    return float(sums[0]) if sums[1] == 0 else math.nan


def train_stream(model, ids: np.ndarray, val_bpc, cfg: StreamConfig, *, ckpt_dir: str | None = None,
                 task: str = "generate", config: dict | None = None, log=print, device=None) -> dict:
    """Train ``model`` (forward(x (B, T), state) -> logits (B, T, V), state) in place on ``ids`` (n,) and leave it
    holding the weights of its best validation; ``val_bpc(model) -> float`` scores them (bits/char), or None:
    no validation, the last weights are kept.

    Returns {'evaluations': [{'step', 'seconds', 'train_bpc', 'val_bpc', 'lr'}, ...], 'steps', 'seconds',
    'train_seconds' (the steps alone), 'cpu_seconds' (process CPU time, evaluations included), 'chars_per_s',
    'best_step', 'best_val_bpc', 'stopped_by', 'schedule'}."""
    import torch

    cfg.check()
    start = time.perf_counter()
    distributed.setup()
    R, W = distributed.rank(), distributed.world_size()
    if cfg.batch_size < W:
        raise ValueError(f"batch_size: {cfg.batch_size} streams cannot be shared among {W} processes; give at "
                         f"least {W}")
    say = log if R == 0 else (lambda *a, **k: None)
    x = distributed.shard(streams(ids, cfg.batch_size), R, W)  # this rank's rows of the global batch
    share = len(x) * W / cfg.batch_size  # DDP averages the ranks' gradients: this gives the global-batch mean
    if device is not None:
        x = x.to(device)
    seed_rank_rng(R)  # the ranks draw different dropout masks (rank 0: the single process's)
    net = distributed.wrap(model)
    per, T = x.shape[1], cfg.seq_len
    if per <= T:
        raise ValueError(f"seq_len: each of the {cfg.batch_size} streams holds {per} characters, fewer than "
                         f"seq_len + 1 = {T + 1}; lower --batch-size or --seq-len")
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = {"val_bpc": math.inf, "step": 0, "weights": copy.deepcopy(model.state_dict())}
    evaluations, losses = [], []
    step, state, pos, train_seconds, stopped_by = 0, None, per, 0.0, "steps"
    cpu_start = time.process_time()  # CPU seconds of this process (all its threads): less sensitive to a shared machine

    def evaluate():
        train_bpc = float(np.mean(losses)) / math.log(2) if losses else math.nan
        # rank 0 validates and every rank takes its value, so the ranks keep the same best weights
        bpc = float(distributed.call_on_main(val_bpc, model)) if val_bpc is not None else math.nan
        entry = {"step": step, "seconds": round(time.perf_counter() - start, 1), "train_bpc": train_bpc,
                 "val_bpc": bpc, "lr": opt.param_groups[0]["lr"]}
        evaluations.append(entry)
        losses.clear()
        improved = bpc < best["val_bpc"] or val_bpc is None
        if improved:
            best.update(val_bpc=bpc, step=step, weights=copy.deepcopy(model.state_dict()))
            if ckpt_dir is not None and R == 0:  # one writer
                os.makedirs(ckpt_dir, exist_ok=True)
                checkpoint.save(os.path.join(ckpt_dir, "best.safetensors"), task=task, config=config or {},
                                model=model)
        rate = step * cfg.batch_size * T / max(train_seconds, 1e-9)
        say(f"step {step:5d}  train {train_bpc:.4f}  val {bpc:.4f} bits/char{'  *' if improved else ''}  "
            f"lr {entry['lr']:.2e}  {rate:,.0f} chars/s  ({entry['seconds']:.0f}s)")

    while True:
        elapsed = _main_clock(start)
        if cfg.steps is not None and step >= cfg.steps:
            break
        if cfg.time_budget is not None and elapsed >= cfg.time_budget:
            stopped_by = "time budget"
            break
        if pos + T + 1 > per:  # a new pass: a random phase, so chunk boundaries move; state starts from zero
            pos, state = int(torch.randint(0, T, (1,), generator=gen)), None
        t0 = time.perf_counter()
        model.train()
        chunk = x[:, pos:pos + T + 1]
        logits, state = net(chunk[:, :-1], state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        value = _global_mean(loss.item(), share / W)
        if not math.isfinite(value):
            raise ArithmeticError(f"non-finite training loss ({value}) at step {step + 1}; lower --lr")
        opt.zero_grad(set_to_none=True)
        (loss * share).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step, cfg.progress(step, elapsed))
        opt.step()
        state, pos, step = _detach(state), pos + T, step + 1
        losses.append(value)
        train_seconds += time.perf_counter() - t0
        if step % cfg.eval_every == 0:
            evaluate()
    if not evaluations or evaluations[-1]["step"] != step:
        evaluate()
    model.load_state_dict(best["weights"])
    model.eval()
    return {"evaluations": evaluations, "steps": step, "seconds": round(time.perf_counter() - start, 1),
            "train_seconds": round(train_seconds, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
            "chars_per_s": round(step * cfg.batch_size * T / max(train_seconds, 1e-9)),
            "best_step": best["step"], "best_val_bpc": best["val_bpc"], "stopped_by": stopped_by,
            "schedule": asdict(cfg)}
