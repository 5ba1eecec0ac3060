"""``lstmkit classify``: an LSTM sequence classifier on a bundled set or a CSV of text,label, compared with
majority-class and logistic-regression baselines in the same run."""


def register(sub) -> None:
    from ..tasks.cli_common import add_common

    p = sub.add_parser("classify", help="train an LSTM classifier (digits, japanese-vowels or a text CSV) "
                                        "and compare it with baselines")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled set: digits (default), japanese-vowels")
    src.add_argument("--csv", help="your CSV with a text and a label column (char-level model)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default="label")
    p.add_argument("--limit", type=int, help="use only this many training cases (quick runs)")
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--num-layers", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.0)
    add_common(p, epochs=40, batch_size=64, lr=5e-3, hidden=64)
    p.set_defaults(func=run, patience=8)


def run(args) -> int:
    from ..tasks.classify_job import run as job
    from ..tasks.cli_common import out_dir

    out = out_dir(args, "classify")
    job(out=out, dataset=args.dataset or ("digits" if args.csv is None else None), csv=args.csv,
        text_col=args.text_col, label_col=args.label_col, limit=args.limit, resume=args.resume,
        hidden_size=args.hidden_size, num_layers=args.num_layers, bidirectional=args.bidirectional, cell=args.cell,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, patience=args.patience, dropout=args.dropout,
        seed=args.seed, progress=not args.no_progress)
    return 0
