"""``lstmkit generate``: a character-level LSTM on a text file (default: Python's pydoc topics), bits per
character on a held-out tail next to xz and bz2, and samples (--prompt, --temperature, --top-k)."""


from ._flags import DefaultsHelp, add_output, emit, fraction, log_for, positive_int, show_progress


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
    p.add_argument("--batches-per-epoch", type=positive_int, default=50, help="random batches of chunks per epoch")
    p.add_argument("--num-layers", type=positive_int, default=1, help="stacked recurrent layers")
    p.add_argument("--embed-dim", type=positive_int, default=64, help="character embedding width")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on the LSTM outputs (and between layers)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine",
                   help="cosine: decay the learning rate to 0 over --epochs")
    p.add_argument("--dynamic-lr", type=float, default=0.1,
                   help="dynamic evaluation: SGD learning rate for adapting to the held-out text as it is scored "
                        "(0: off)")
    p.add_argument("--min-match", type=int, default=5, help="match model: shortest repeat it follows")
    p.add_argument("--prompt", default="", help="text the samples continue")
    p.add_argument("--n-chars", type=positive_int, default=300, help="characters per sample")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (lower: safer choices)")
    p.add_argument("--top-k", type=positive_int, default=20, help="sample among the k likeliest characters")
    add_common(p, epochs=10, batch_size=64, lr=4e-3, hidden=256)
    add_output(p)
    p.set_defaults(func=run, patience=3)


def run(args) -> int:
    from ..tasks.cli_common import out_dir
    from ..tasks.generate.job import run as job

    out = out_dir(args, "generate")
    summary = job(out=out, text_file=args.text, limit=args.limit, test_fraction=args.test_fraction,
        val_fraction=args.val_fraction, log=log_for(args), prompt=args.prompt, n_chars=args.n_chars,
        temperature=args.temperature, top_k=args.top_k, dynamic_lr=args.dynamic_lr, min_match=args.min_match,
        resume=args.resume, hidden_size=args.hidden_size,
        cell=args.cell, num_layers=args.num_layers, embed_dim=args.embed_dim, dropout=args.dropout,
        lr_schedule=args.lr_schedule, seq_len=args.seq_len, epochs=args.epochs, batch_size=args.batch_size,
        batches_per_epoch=args.batches_per_epoch, lr=args.lr, patience=args.patience, seed=args.seed,
        progress=show_progress(args), device=args.device)
    emit(args, summary)
    return 0
