"""The shared training loop: mini-batches, Adam, gradient clipping, a tqdm bar with loss and ETA, early
stopping on a validation split, a checkpoint every epoch and a bit-identical ``resume``.

Every task supplies ``loss_fn(model, *batch) -> scalar tensor`` (the batch's mean; or a list of
``WeightedMean`` terms when it is a weighted mean, which DDP must combine by weight) and its data as tuples of
tensors whose first dimension indexes examples (N, ...). Determinism: ``seed_everything`` seeds Python, NumPy and torch;
batch order comes from a dedicated ``torch.Generator`` whose state is checkpointed with the others, so an
interrupted run resumed from ``last.safetensors`` takes exactly the steps the uninterrupted run takes.
"""
from __future__ import annotations

import copy
import functools
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import checkpoint, devices, distributed

LAST, BEST = "last.safetensors", "best.safetensors"


@dataclass
class TrainConfig:
    """Optimisation settings shared by every task.

    batches_per_epoch: if set, each epoch draws this many random batches (for tasks with far more
    examples than an epoch can afford, e.g. forecasting windows); otherwise one pass over the data.
    lr_schedule: 'constant'; 'cosine' (lr decays from ``lr`` to 0 over ``epochs`` epochs; the rate is a
    function of the step count alone, so ``resume`` needs no scheduler state); or 'plateau' (Karim et al.'s
    LSTM-FCN policy, after Keras' ReduceLROnPlateau on the *training* loss, so it needs no held-out data): the
    rate is multiplied by ``plateau_factor`` (2^-1/3) whenever the epoch's mean training loss has not fallen by
    1e-4 below its best for ``plateau_patience`` epochs, down to ``plateau_min_ratio``·lr; a plateau at that
    floor ends training (``history['converged']``), else it runs to ``epochs``. Its state (the current rate,
    the best loss, the epochs since) is in the checkpoint, so ``resume`` continues it.
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
    on_nonfinite: str | None = None  # 'stop' (raise) or 'skip' the batch; None: LSTMKIT_ON_NONFINITE or 'stop'
    lr_schedule: str = "constant"
    plateau_patience: int = 10
    plateau_factor: float = 2.0 ** (-1.0 / 3.0)
    plateau_min_ratio: float = 0.1
    loss_unit: str = ""  # printed after the losses, e.g. "nats per sequence (cross-entropy)"


LR_SCHEDULES = ("constant", "cosine", "plateau")
PLATEAU_MIN_DELTA = 1e-4  # an epoch improves on the best training loss only by more than this (Keras' default)


def scheduled_lr(cfg: TrainConfig, step: int, total_steps: int, plateau_lr: float | None = None) -> float:
    """The learning rate of optimisation step ``step`` (0-based) out of ``total_steps``; 'plateau': the rate its
    rule has reached (``plateau_lr``, None before training: ``lr``)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    if cfg.lr_schedule == "plateau":
        return cfg.lr if plateau_lr is None else plateau_lr
    raise ValueError(f"lr_schedule: expected one of {', '.join(map(repr, LR_SCHEDULES))}, got {cfg.lr_schedule!r}")


def check_plateau(cfg: TrainConfig) -> None:
    """Refuse plateau settings that would never reduce, never stop or grow the rate, naming the field."""
    p = cfg.plateau_patience
    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        raise ValueError(f"plateau_patience: expected a positive integer (epochs), got {p!r}")
    if not 0.0 < cfg.plateau_factor < 1.0:
        raise ValueError(f"plateau_factor: expected a factor in (0, 1), got {cfg.plateau_factor!r}")
    if not 0.0 < cfg.plateau_min_ratio <= 1.0:
        raise ValueError(f"plateau_min_ratio: expected a fraction of lr in (0, 1], got {cfg.plateau_min_ratio!r}")


def plateau_step(cfg: TrainConfig, state: dict, train_loss: float) -> str | None:
    """After an epoch under lr_schedule='plateau': update state's 'lr_now', 'plateau_best', 'plateau_bad' from
    the epoch's mean training loss; -> 'reduced', 'converged' (a plateau at the floor) or None."""
    if train_loss < state["plateau_best"] - PLATEAU_MIN_DELTA:
        state.update(plateau_best=train_loss, plateau_bad=0)
        return None
    state["plateau_bad"] += 1
    if state["plateau_bad"] < cfg.plateau_patience:
        return None
    floor = cfg.lr * cfg.plateau_min_ratio
    if state["lr_now"] <= floor * (1 + 1e-9):  # already at the floor: nothing left to reduce
        return "converged"
    state.update(lr_now=max(state["lr_now"] * cfg.plateau_factor, floor), plateau_bad=0)
    return "reduced"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (inside ``keeps_global_rng``: the caller's come back)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keeps_global_rng(method):
    """Decorator of an estimator's public method that seeds the global generators (fit, load): Python's, NumPy's
    and torch's states (CUDA's too, once initialised) are put back when it returns or raises, so training is
    reproducible from the estimator's seed and a caller's own draws after ``fit`` continue where they were
    (scikit-learn's rule: an estimator does not reseed the global state)."""
    @functools.wraps(method)
    def kept(*args, **kwargs):
        import torch

        cuda = torch.cuda.is_initialized()
        states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state(),
                  torch.cuda.get_rng_state_all() if cuda else None)
        try:
            return method(*args, **kwargs)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.random.set_rng_state(states[2])
            if cuda:
                torch.cuda.set_rng_state_all(states[3])

    return kept


def _batches(n: int, cfg: TrainConfig, gen):
    """Index tensors for one epoch, drawn with ``gen``."""
    import torch

    perm = torch.randperm(n, generator=gen)
    if cfg.batches_per_epoch is not None:
        need = cfg.batches_per_epoch * cfg.batch_size
        reps = math.ceil(need / n)
        perm = torch.cat([perm] + [torch.randperm(n, generator=gen) for _ in range(reps - 1)])[:need]
    return [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]


class NonFiniteLossError(ArithmeticError, ValueError):
    """The loss (or the gradient) of a training batch is NaN or infinite; the message says where."""


def _on_nonfinite_default() -> str:
    return os.environ.get("LSTMKIT_ON_NONFINITE", "stop")


@dataclass(frozen=True)
class WeightedMean:
    """One term of a loss that is a weighted mean over a batch: ``mean`` = Σ wᵢ·lossᵢ / Σ wᵢ (a scalar tensor,
    differentiable) and ``weight`` = Σ wᵢ (a float or a scalar tensor; no gradient flows through it).

    A ``loss_fn`` may return a list of them, the loss being their sum, instead of a tensor. Why: under DDP each
    rank sees part of the batch, and a rank's mean over its own items is not its share of the global mean when
    the weights differ between items (ES-RNN's origins weighed by level / scale, a penalty averaged over valid
    points); the loop all-reduces each term's weight total and weighs the rank's mean by its share of it, so N
    processes take one process's step. A plain tensor counts as the mean over the batch's examples (weight: the
    number of examples)."""

    mean: object
    weight: object


def loss_terms(out, n_examples: int) -> list:
    """``loss_fn``'s result as a list of WeightedMean (a plain tensor: the mean over ``n_examples`` examples)."""
    if isinstance(out, (list, tuple)):
        return list(out)
    return [WeightedMean(out, n_examples)]


def sum_terms(terms: list):
    """The loss of the terms over this process's batch alone: the sum of their means."""
    loss = terms[0].mean
    for term in terms[1:]:
        loss = loss + term.mean
    return loss


def _weighted_means(totals, weights) -> float:
    """Σ_k totals_k / weights_k, a term without weight counting 0."""
    return float(sum(float(t) / float(w) for t, w in zip(totals, weights) if float(w) > 0))


def evaluate_loss(model, loss_fn, data: tuple, batch_size: int) -> float:
    """The loss over ``data`` in eval mode: each term's weighted mean over the whole of ``data`` (for a plain
    per-example mean: the batches' means weighted by their sizes), so how ``data`` is cut into batches, or
    shared among ranks, does not change it.

    Under DDP each rank evaluates a contiguous share of ``data``; every rank sums the gathered per-term totals
    in rank order, so all of them get the same value."""
    import torch

    was_training = model.training
    device = devices.of(model)
    model.eval()
    sums = []  # [weighted total, weight] per loss term
    n = len(data[0])
    lo, hi = 0, n
    if distributed.active():
        r, w = distributed.rank(), distributed.world_size()
        lo, hi = r * n // w, (r + 1) * n // w
    with torch.no_grad():
        for i in range(lo, hi, batch_size):
            batch = devices.to(tuple(t[i:min(i + batch_size, hi)] for t in data), device)
            terms = loss_terms(loss_fn(model, *batch), len(batch[0]))
            sums += [[0.0, 0.0] for _ in terms[len(sums):]]
            for acc, term in zip(sums, terms):
                acc[0] += float(term.mean) * float(term.weight)
                acc[1] += float(term.weight)
    model.train(was_training)
    if distributed.active():  # a rank with an empty share has no terms: gathered lists, summed in rank order
        ranks = distributed.all_gather_object(sums)
        sums = [[0.0, 0.0] for _ in range(max(map(len, ranks)))]
        for part in ranks:
            for acc, (total, weight) in zip(sums, part):
                acc[0] += total
                acc[1] += weight
    if not sums:
        return 0.0
    return _weighted_means(*zip(*sums))


def _step_loss(net, loss_fn, train: tuple, idx, device, R: int, W: int):
    """(this rank's loss to backpropagate, the global batch's loss value, whether any rank's loss is non-finite)
    for the global batch ``idx``. One code path for 1 and N processes: this rank's share ``idx[R::W]`` gives a
    WeightedMean per loss term; their weights are all-reduced and each mean is scaled by the rank's share of
    its term's global weight, times W because DDP averages the ranks' gradients: the update is the global batch's
    weighted mean, as in one process (where every factor is exactly 1.0)."""
    local = distributed.shard(idx, R, W)
    placeholder = len(local) == 0  # fewer examples than ranks: join the all-reduces with a zero-weighted example
    if placeholder:
        local = idx[:1]
    with distributed.placeholder_share(placeholder):
        terms = loss_terms(loss_fn(net, *devices.to(tuple(t[local] for t in train), device)), len(local))
    means = [float(term.mean.detach()) for term in terms]
    weights = [0.0 if placeholder else float(term.weight) for term in terms]
    finite = all(map(math.isfinite, means))
    k = len(terms)
    sums = distributed.all_reduce_sum([m * w if finite else 0.0 for m, w in zip(means, weights)] + weights
                                      + [0.0 if finite else 1.0])
    totals, weight_totals, bad = sums[:k].tolist(), sums[k:2 * k].tolist(), bool(sums[-1] > 0)
    if bad:
        value = sum(means) if not finite else math.nan  # this rank's own non-finite value, for the message
    else:
        value = _weighted_means(totals, weight_totals)
    loss = sum_terms([WeightedMean(term.mean * (w * W / wt if wt > 0 else 0.0), w)
                      for term, w, wt in zip(terms, weights, weight_totals)])
    return loss, value, bad


def resumable(ckpt_dir: str | None) -> bool:
    """Whether ``ckpt_dir`` holds a ``last`` checkpoint to resume, as rank 0 sees it, on every rank: only rank 0
    needs to see the run folder (docs/distributed.md), and ranks that decided apart would deadlock, one in the
    resume's collectives and the other training afresh."""
    return ckpt_dir is not None and bool(distributed.call_on_main(os.path.isfile, os.path.join(ckpt_dir, LAST)))


def seed_rank_rng(R: int) -> None:
    """Give rank R > 0 its own torch generator, derived from the current state (the seeded one in a fresh run,
    rank 0's restored one for a rank a checkpoint has no state of), so the ranks draw different dropout masks
    for their different examples; rank 0 keeps its stream, the one a single process draws."""
    import torch

    if R == 0:
        return
    base = int(torch.randint(0, 2**62, (1,)))
    torch.manual_seed((base + 0x9E3779B97F4A7C15 * R) % 2**63)


def fit(model, loss_fn, train: tuple, val: tuple | None, cfg: TrainConfig, *, task: str, config: dict,
        ckpt_dir: str | None = None, resume: bool = False, log=print, snapshots: int = 1) -> dict:
    """Train ``model`` in place and leave it holding the weights of its best validation epoch.

    train, val: tuples of tensors (N, ...) passed batch-wise to ``loss_fn(model, *batch)``, which returns the
    batch's mean loss, or a list of :class:`WeightedMean` terms for a weighted mean (exact under DDP); val None
    means no early stopping (the last epoch is kept). With ``ckpt_dir``, ``last.safetensors`` (full state)
    and ``best.safetensors`` (best weights) are written there every epoch; ``resume=True`` continues from
    ``last.safetensors`` bit-identically (on the CPU; torch's CUDA generator is not checkpointed). The data
    stays where it is; each batch moves to the device of ``model``'s parameters (``lstmkit.tasks.devices``).
    ``config`` (JSON-able) is stored in every checkpoint so ``lstmkit predict`` can rebuild the model.
    Returns {'history': [...], 'best_epoch', 'stopped_early'}. ``snapshots`` k > 1 adds 'snapshots': the state
    dicts of the (up to) k − 1 epochs before the kept one, oldest first, for a snapshot ensemble (fewer when fewer
    epochs came before it, or when they ran before a resume: they are not checkpointed).

    A NaN/inf loss or gradient raises :class:`NonFiniteLossError` naming the epoch, step and batch
    (``cfg.on_nonfinite='skip'``, or LSTMKIT_ON_NONFINITE=skip, skips that batch instead and counts it in
    the history). Under torchrun (WORLD_SIZE > 1) the same call trains with DistributedDataParallel: each
    rank takes its share of every global batch, metrics are all-reduced, rank 0 alone logs and writes
    checkpoints; see :mod:`lstmkit.tasks.distributed`.
    """
    import torch

    tqdm = _tqdm()
    distributed.setup()
    R, W = distributed.rank(), distributed.world_size()
    main = R == 0
    say = log if main else (lambda *a, **k: None)
    on_nonfinite = cfg.on_nonfinite or _on_nonfinite_default()
    scheduled_lr(cfg, 0, 1)  # a bad lr_schedule fails here, before any training
    plateau = cfg.lr_schedule == "plateau"
    if plateau:
        check_plateau(cfg)
    if isinstance(snapshots, bool) or not isinstance(snapshots, (int, np.integer)) or snapshots < 1:
        raise ValueError(f"snapshots: expected an integer >= 1, got {snapshots!r}")
    if on_nonfinite not in ("stop", "skip"):
        raise ValueError(f"on_nonfinite: expected 'stop' or 'skip', got {on_nonfinite!r}")
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best": math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "stopped_early": False, "train": asdict(cfg)}
    if plateau:
        state.update(lr_now=cfg.lr, plateau_best=math.inf, plateau_bad=0, converged=False)
    best_weights = copy.deepcopy(model.state_dict())
    recent, kept = [], []  # snapshots > 1: the last k epochs' weights, and those before the best epoch
    if resume:
        last = None if ckpt_dir is None else os.path.join(ckpt_dir, LAST)
        ck = distributed.call_on_main(_load_resume, last, ckpt_dir, task)  # rank 0 reads, every rank gets it
        # ValueError naming a shape or state mismatch; each rank takes its own torch RNG state where saved
        own_rng = checkpoint.resume_into(ck, last, model, opt, gen, config, rank=R)
        state.update({k: v for k, v in ck["trainer"].items() if k != "train"})
        if state["best_epoch"]:
            best_weights = distributed.call_on_main(lambda: checkpoint.load(os.path.join(ckpt_dir, BEST))["model"])
        say(f"resumed from {last} after epoch {state['epoch']}")
        _resume_rng_note(checkpoint.saved_ranks(ck), W, own_rng, R, say)
    else:
        seed_rank_rng(R)  # the ranks draw different dropout masks (rank 0: the single process's)
    if ckpt_dir is not None and main:
        os.makedirs(ckpt_dir, exist_ok=True)
    device = devices.of(model)
    net = distributed.wrap(model)  # DDP when distributed: averages gradients over the ranks
    n = len(train[0])
    per_epoch = len(_batches(n, cfg, torch.Generator().manual_seed(0)))
    remaining = 0 if state["stopped_early"] else max(cfg.epochs - state["epoch"], 0)
    # a bar only on a terminal: redirected to a log it would be carriage-return noise, so plain lines go there
    bar = tqdm(total=remaining * per_epoch, disable=not (cfg.progress and main and _on_terminal()), file=sys.stderr,
               unit="batch", dynamic_ncols=True, leave=False)
    try:
        while not state["stopped_early"] and state["epoch"] < cfg.epochs:
            start = time.perf_counter()
            model.train()
            losses, skipped = [], 0
            for b, idx in enumerate(_batches(n, cfg, gen)):
                where = (f"epoch {state['epoch'] + 1}, step {state['epoch'] * per_epoch + b + 1} (batch index {b} "
                         f"of {per_epoch} in the epoch)")
                loss, batch_loss, bad = _step_loss(net, loss_fn, train, idx, device, R, W)
                value = batch_loss
                if bad:
                    if _nonfinite(on_nonfinite, f"non-finite loss ({value}) at {where}", idx, say, bar):
                        skipped += 1
                        bar.update(1)
                        continue
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip else math.inf)
                if not math.isfinite(float(norm)):  # gradients are all-reduced: every rank agrees
                    if _nonfinite(on_nonfinite, f"non-finite gradient norm ({float(norm)}) at {where}", idx, say,
                                  bar):
                        opt.zero_grad(set_to_none=True)
                        skipped += 1
                        bar.update(1)
                        continue
                for group in opt.param_groups:
                    group["lr"] = scheduled_lr(cfg, state["epoch"] * per_epoch + b, cfg.epochs * per_epoch,
                                               state.get("lr_now"))
                opt.step()
                losses.append(batch_loss)
                bar.update(1)
                bar.set_postfix(epoch=state["epoch"] + 1, loss=f"{losses[-1]:.4f}")
            state["epoch"] += 1
            train_loss = float(np.mean(losses)) if losses else math.nan
            val_loss = evaluate_loss(model, loss_fn, val, max(cfg.batch_size, 256)) if val is not None else train_loss
            improved = val_loss < state["best"]
            if snapshots > 1:
                recent = (recent + [copy.deepcopy(model.state_dict())])[-snapshots:]
            if improved:
                state.update(best=val_loss, best_epoch=state["epoch"], bad_epochs=0)
                best_weights = copy.deepcopy(model.state_dict())
                kept = recent[:-1]
            else:
                state["bad_epochs"] += 1
                if val is not None and state["bad_epochs"] >= cfg.patience:
                    state["stopped_early"] = True
            entry = {"epoch": state["epoch"], "train_loss": train_loss, "val_loss": val_loss,
                     "seconds": round(time.perf_counter() - start, 3)}
            if plateau:
                entry["lr"] = state["lr_now"]  # the rate this epoch trained at
                if plateau_step(cfg, state, train_loss) == "converged":
                    state.update(stopped_early=True, converged=True)
            if skipped:
                entry["skipped_batches"] = skipped
            state["history"].append(entry)
            if ckpt_dir is not None:
                rank_rngs = distributed.all_gather_object(torch.get_rng_state())  # every rank's, for resume
                if main:  # one writer; the others wait below so nobody runs ahead of a checkpoint
                    if improved:
                        checkpoint.save(os.path.join(ckpt_dir, BEST), task=task, config=config, model=model)
                    checkpoint.save(os.path.join(ckpt_dir, LAST), task=task, config=config, model=model,
                                    optimizer=opt, trainer=state, loader_generator=gen, rank_rngs=rank_rngs)
                distributed.barrier()
            unit = f" {cfg.loss_unit}" if cfg.loss_unit else ""
            msg = (f"epoch {state['epoch']:3d}  train {train_loss:.4f}  val {val_loss:.4f}{unit}"
                   f"{'  *' if improved else ''}  ({time.perf_counter() - start:.1f}s)"
                   f"{f'  [{skipped} non-finite batches skipped]' if skipped else ''}")
            if not bar.disable:
                bar.write(msg, file=sys.stderr)
            else:
                say(msg)
            if state.get("converged"):
                say(f"stop after epoch {state['epoch']}: the training loss reached a plateau at the lowest rate "
                    f"({state['lr_now']:.3g})")
            elif state["stopped_early"]:
                say(f"early stop after epoch {state['epoch']}: no val improvement for {cfg.patience} epochs")
    finally:
        bar.close()
    model.load_state_dict(best_weights)
    model.eval()
    out = {"history": state["history"], "best_epoch": state["best_epoch"], "stopped_early": state["stopped_early"],
           "best_val_loss": state["best"], "converged": bool(state.get("converged", False))}
    if snapshots > 1:
        out["snapshots"] = kept
    return out


def quiet(*args, **kwargs) -> None:
    """The log of a silent estimator (verbose=0): prints nothing."""


def _resume_rng_note(saved: int, W: int, own: bool, R: int, say) -> None:
    """Say when the checkpoint's per-rank RNG states do not fit this run's processes (rank 0 speaks for all), and
    give a rank without a saved state one derived from rank 0's, as a fresh run derives it from the seed."""
    if not own:
        seed_rank_rng(R)
    if saved != W:
        say(f"note: the checkpoint holds the torch RNG states of {saved} process(es), this run has {W}: ranks "
            f"below {min(saved, W)} continue their own, the others derive theirs from rank 0's; random draws "
            "(dropout) therefore differ from an uninterrupted run, which the weights otherwise follow")


def _load_resume(last, ckpt_dir, task):
    if last is None or not os.path.isfile(last):
        raise FileNotFoundError(f"--resume: no {LAST} in {ckpt_dir}")
    return checkpoint.load(last, task=task)


def _nonfinite(mode: str, what: str, idx, say, bar) -> bool:
    """Skip (True, after a warning) or raise NonFiniteLossError naming where and which examples."""
    ex = idx[:8].tolist()
    detail = f"{what}; examples {ex}{' ...' if len(idx) > 8 else ''}"
    if mode == "skip":
        if bar.disable:
            say(f"warning: {detail}: batch skipped")
        else:
            bar.write(f"warning: {detail}: batch skipped", file=sys.stderr)
        return True
    raise NonFiniteLossError(f"{detail}. Training stopped before the update, so the weights stay finite; the "
                             f"last checkpoint is the previous epoch's. Check the data (NaN/inf inputs or "
                             f"targets), lower --lr, or skip such batches with LSTMKIT_ON_NONFINITE=skip")


def _on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _tqdm():
    from .._optional import require

    return require("tqdm", "tasks").tqdm
