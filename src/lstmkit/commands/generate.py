"""``lstmkit generate``: a character-level LSTM on a text file (default: Python's pydoc topics), bits per
character on a held-out tail next to xz and bz2, and samples (--prompt, --temperature, --top-k)."""

from ._flags import (DefaultsHelp, add_output, dropout_rate, emit, fraction, log_for, non_negative, non_negative_int,
                     positive, positive_int, show_progress)


def register(sub) -> None:
    from ..tasks.cli_common import add_common

    p = sub.add_parser("generate", formatter_class=DefaultsHelp,
                       help="train a character LSTM on a text, compare its bits/char with xz and bz2, "
                                        "and sample from it")
    p.add_argument("--text", help="UTF-8 text file (default: CPython's pydoc_data.topics)")
    p.add_argument("--limit", type=positive_int, help="use only the first N characters (quick runs; default: all)")
    p.add_argument("--test-fraction", type=fraction, default=0.05,
                   help="the held-out tail scored in bits per character (at least 200 characters)")
    p.add_argument("--val-fraction", type=fraction, default=0.02,
                   help="the validation part before it, for early stopping (at least 200 characters)")
    p.add_argument("--seq-len", type=positive_int, default=64, help="characters per training chunk (BPTT length)")
    p.add_argument("--batches-per-epoch", type=positive_int, default=EPOCH_ONLY["batches_per_epoch"],
                   help="random batches of chunks per epoch")
    p.add_argument("--num-layers", type=positive_int, default=1, help="stacked recurrent layers")
    p.add_argument("--embed-dim", type=positive_int, default=64, help="character embedding width")
    p.add_argument("--dropout", type=dropout_rate, default=0.0,
                   help="dropout on the LSTM outputs (and between layers)")
    p.add_argument("--embed-dropout", type=dropout_rate, default=0.0, help="dropout on the embedded characters")
    p.add_argument("--proj-size", type=non_negative_int, default=0,
                   help="LSTM projection: each layer outputs this many units instead of --hidden-size (0: none)")
    p.add_argument("--layer-norm", action="store_true", help="lstmkit's layer-normalised LSTM/GRU cell")
    p.add_argument("--zoneout", type=dropout_rate, nargs=2, metavar=("CELL", "HIDDEN"), default=[0.0, 0.0],
                   help="zoneout: the probabilities that a unit keeps its cell / hidden value at a training step "
                        "(a GRU's CELL must be 0)")
    p.add_argument("--recurrent-dropout", type=dropout_rate, default=0.0,
                   help="dropout on the state each step reads, one mask per sequence (variational)")
    p.add_argument("--tie-weights", action="store_true",
                   help="the output layer shares the embedding matrix (needs --embed-dim equal to --proj-size, or "
                        "to --hidden-size without a projection)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=EPOCH_ONLY["lr_schedule"],
                   help="cosine: decay the learning rate to 0 over --epochs (epoch training only)")
    p.add_argument("--time-budget", type=positive, metavar="MINUTES",
                   help="stream training (state carried across chunks, AdamW, warm-up then cosine decay over the "
                        "budget): train for this many minutes, validations included, keeping the best validated "
                        "weights; replaces --epochs/--batches-per-epoch/--patience (default: epoch training)")
    p.add_argument("--steps", type=positive_int,
                   help="stream training for this many steps (with --time-budget: whichever ends first; the "
                        "schedule follows the one further along) (default: epoch training)")
    p.add_argument("--warmup", type=non_negative_int, default=STREAM_ONLY["warmup"],
                   help="stream training: steps of linear learning-rate warm-up")
    p.add_argument("--weight-decay", type=non_negative, default=STREAM_ONLY["weight_decay"],
                   help="stream training: AdamW's weight decay")
    p.add_argument("--eval-every", type=positive_int, default=STREAM_ONLY["eval_every"],
                   help="stream training: steps between validations (the best validated weights are kept)")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default="float32",
                   help="training's products: bfloat16 on the CPU (float32 state, loss and weights; "
                        "docs/mixed_precision.md), or auto: bfloat16 where the CPU has AVX512_BF16 or AMX")
    p.add_argument("--dynamic-lr", type=non_negative, default=0.1,
                   help="dynamic evaluation: SGD learning rate for adapting to the held-out text as it is scored "
                        "(0: off)")
    p.add_argument("--min-match", type=positive_int, default=5, help="match model: shortest repeat it follows")
    p.add_argument("--prompt", default="", help="text the samples continue")
    p.add_argument("--n-chars", type=positive_int, default=300, help="characters per sample")
    # checked here, not by CharLM.sample after the training: a bad value must not cost a training run
    p.add_argument("--temperature", type=positive, default=0.8, help="sampling temperature (lower: safer choices)")
    p.add_argument("--top-k", type=positive_int, default=20, help="sample among the k likeliest characters")
    add_common(p, epochs=EPOCH_ONLY["epochs"], batch_size=64, lr=4e-3, hidden=256)
    add_output(p)
    p.set_defaults(func=run, patience=EPOCH_ONLY["patience"])


# Flags that steer only one of the two training modes, with their defaults: a value other than the default given
# to the other mode would be ignored, so it is refused instead.
EPOCH_ONLY = {"epochs": 10, "batches_per_epoch": 50, "patience": 3, "lr_schedule": "cosine"}
STREAM_ONLY = {"warmup": 50, "weight_decay": 0.01, "eval_every": 100}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_flags(args) -> None:
    """ValueError naming the flags that do not fit together (before the run folder is made)."""
    stream = bool(args.time_budget or args.steps)
    unused = EPOCH_ONLY if stream else STREAM_ONLY
    for name, default in unused.items():
        if getattr(args, name) != default:
            raise ValueError(f"{_flag(name)}: only for {'epoch' if stream else 'stream'} training, got "
                             f"{getattr(args, name)!r} with {'--time-budget/--steps' if stream else 'epoch training'}"
                             f" (it would be ignored)")
    if args.proj_size and args.proj_size >= args.hidden_size:
        raise ValueError(f"--proj-size: expected less than --hidden-size {args.hidden_size}, got {args.proj_size}")
    if args.proj_size and args.cell != "lstm":
        raise ValueError(f"--proj-size: only the LSTM has a projection, got --cell {args.cell}")
    width = args.proj_size or args.hidden_size
    if args.tie_weights and args.embed_dim != width:
        raise ValueError(f"--tie-weights: expected --embed-dim equal to the recurrent output width "
                         f"({'--proj-size' if args.proj_size else '--hidden-size'} {width}), got {args.embed_dim}")
    if args.cell == "gru" and args.zoneout[0]:
        raise ValueError(f"--zoneout: a GRU has no cell state, so CELL must be 0, got {args.zoneout[0]:g}")
    if args.resume and (args.time_budget or args.steps):
        raise ValueError("--resume: not available with --time-budget/--steps (stream training restarts its schedule)")


def run(args) -> int:
    from ..tasks.cli_common import out_dir
    from ..tasks.generate.job import run as job

    check_flags(args)
    out = out_dir(args, "generate")
    summary = job(out=out, text_file=args.text, limit=args.limit, test_fraction=args.test_fraction,
        val_fraction=args.val_fraction, log=log_for(args), prompt=args.prompt, n_chars=args.n_chars,
        temperature=args.temperature, top_k=args.top_k, dynamic_lr=args.dynamic_lr, min_match=args.min_match,
        resume=args.resume, hidden_size=args.hidden_size,
        cell=args.cell, num_layers=args.num_layers, embed_dim=args.embed_dim, dropout=args.dropout,
        lr_schedule=args.lr_schedule, seq_len=args.seq_len, epochs=args.epochs, batch_size=args.batch_size,
        batches_per_epoch=args.batches_per_epoch, lr=args.lr, patience=args.patience, seed=args.seed,
        progress=show_progress(args), device=args.device, embed_dropout=args.embed_dropout,
        proj_size=args.proj_size, layer_norm=args.layer_norm, tie_weights=args.tie_weights, steps=args.steps,
        zoneout=tuple(args.zoneout), recurrent_dropout=args.recurrent_dropout,
        time_budget=None if args.time_budget is None else 60.0 * args.time_budget, warmup=args.warmup,
        weight_decay=args.weight_decay, eval_every=args.eval_every, precision=args.precision)
    emit(args, summary)
    return 0
