"""Options every task command shares (output folder, resume, seed, epochs, progress bar)."""
from __future__ import annotations

import os


def add_common(p, epochs: int, batch_size: int | None, lr: float | None, hidden: int,
               batch_help: str = "examples per training step", lr_help: str = "Adam's learning rate") -> None:
    """--out/--overwrite/--resume, --epochs/--batch-size/--lr/--patience/--hidden-size/--cell/--seed,
    --device, --no-progress. A task whose --batch-size/--lr default depends on another flag passes None and
    says so in batch_help/lr_help."""
    from ..commands._flags import non_negative_int, positive, positive_int  # the numbers argparse checks

    p.add_argument("--out", help="run folder (default: a new runs/<task>-<timestamp>); an existing non-empty "
                                 "folder is refused unless --overwrite or --resume")
    # one or the other: a new run written over the folder, or the run in it continued
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="allow writing into an existing non-empty --out")
    again.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs at most")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help=batch_help)
    p.add_argument("--lr", type=positive, default=lr, help=lr_help)
    p.add_argument("--patience", type=non_negative_int, default=6,
                   help="early stopping: epochs without val improvement")
    p.add_argument("--hidden-size", type=positive_int, default=hidden, help="hidden units of the recurrent layer")
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="recurrent cell")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of every random draw (weights, batches, splits)")
    p.add_argument("--device", type=device, default="cpu", help="where the model trains: cpu, cuda, cuda:N or mps "
                                                              "(checked before any work)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def device(text: str) -> str:
    """--device's type: the name, checked (argparse reports a missing GPU as a usage error, before any work)."""
    import argparse

    from .devices import resolve

    try:
        resolve(text)
    except ValueError as e:  # DeviceUnavailableError too
        raise argparse.ArgumentTypeError(str(e).removeprefix("device: ")) from None
    return text


def out_dir(args, task: str) -> str:
    from .distributed import call_on_main
    from .runio import prepare_out

    if args.resume and not args.out:
        raise ValueError("--resume needs --out (the run folder to continue)")
    # Under torchrun rank 0 alone checks and creates the folder (or picks the timestamped default) and every
    # rank gets its path, so the "folder not empty" check cannot race with files another rank already made.
    existed = args.out is not None and os.path.exists(args.out)
    if existed:
        _refuse_inputs_inside(args, args.out)
    out = call_on_main(prepare_out, args.out, task, overwrite=args.overwrite, resume=args.resume)
    args.run_dir = out  # for the CLI's Ctrl-C message: where the run's checkpoints are
    args.made_run_dir = not existed  # a run that fails before writing anything removes the folder it made
    return out


INPUT_FLAGS = ("csv", "ts", "sequences", "text")  # the task commands' input files


def _refuse_inputs_inside(args, out: str) -> None:
    """ValueError when an input file lies in the run folder: --overwrite and --resume let the run write its
    fixed names there (forecasts.csv, model.safetensors, ...), which would replace the data being read."""
    folder = os.path.realpath(out)
    for name in INPUT_FLAGS:
        path = getattr(args, name, None)
        if isinstance(path, str) and os.path.exists(path):
            if os.path.commonpath([folder, os.path.realpath(path)]) == folder:
                raise ValueError(f"--{name} {path} is inside --out {out}, the run folder this run writes into; "
                                 "keep the input outside it (or write the run to another --out)")
