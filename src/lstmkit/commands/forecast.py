"""``lstmkit forecast``: a global LSTM on a bundled set or a long-format CSV (unique_id, ds, y), backtested
against naive, seasonal naive, Theta and ETS on the same origins."""


def register(sub) -> None:
    from ..tasks.cli_common import add_common

    p = sub.add_parser("forecast", help="backtest a global LSTM forecaster against naive, seasonal naive, "
                                        "Theta and ETS")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled: tourism-quarterly (default), tourism-monthly, "
                                                     "tourism-yearly, m1-*, airpassengers, sunspots, co2, nile")
    src.add_argument("--csv", help="your long-format CSV with columns unique_id, ds, y")
    p.add_argument("--horizon", type=int, help="steps ahead (default: the set's own; needed with --csv)")
    p.add_argument("--season-length", type=int, help="seasonal period (default: the set's, or inferred from ds)")
    p.add_argument("--folds", type=int, default=1, help="rolling origins, H steps apart (the last = test split)")
    p.add_argument("--limit", type=int, help="use only the first N series (quick runs)")
    p.add_argument("--input-length", type=int, help="values per input window (default max(2H, 3m))")
    p.add_argument("--ensemble", type=int, default=1, help="models with different seeds and input lengths; "
                                                           "the median forecast is used")
    p.add_argument("--batches-per-epoch", type=int, default=16)
    p.add_argument("--baselines", default="naive,seasonal naive,theta,ets (damped)",
                   help="comma-separated subset of: naive, seasonal naive, theta, ets (damped)")
    add_common(p, epochs=30, batch_size=512, lr=3e-3, hidden=64)
    p.set_defaults(func=run, patience=5)


def run(args) -> int:
    from ..tasks.cli_common import out_dir
    from ..tasks.forecast_job import run as job

    methods = tuple(m.strip() for m in args.baselines.split(",") if m.strip())
    out = out_dir(args, "forecast")
    job(out=out, dataset=args.dataset or ("tourism-quarterly" if args.csv is None else None), csv=args.csv,
        horizon=args.horizon, season_length=args.season_length, folds=args.folds, limit=args.limit,
        methods=methods, resume=args.resume, input_length=args.input_length, hidden_size=args.hidden_size,
        cell=args.cell, epochs=args.epochs, batch_size=args.batch_size, batches_per_epoch=args.batches_per_epoch,
        lr=args.lr, patience=args.patience, ensemble=args.ensemble, seed=args.seed, progress=not args.no_progress)
    return 0
