"""``lstmkit forecast``: a global LSTM (``--model esrnn``: Smyl's ES-RNN) on a bundled set or a long-format
CSV/Parquet (unique_id, ds, y), backtested against naive, seasonal naive, Theta, ETS and their combination with the
model on the same origins, or (--future) fit on all history to forecast the next steps."""
import argparse

from ._flags import DefaultsHelp, add_output, emit, log_for, non_negative, positive_int, refuse_unused, show_progress


def register(sub) -> None:
    from ..tasks.forecast.baselines import DEFAULT, METHODS
    from ..tasks.cli_common import add_common

    p = sub.add_parser("forecast", formatter_class=DefaultsHelp,
                       help="backtest a global LSTM forecaster against naive, seasonal naive, Theta and ETS, or "
                            "forecast the future (--future)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled: tourism-quarterly (default), tourism-monthly, "
                                                     "tourism-yearly, m1-*, airpassengers, sunspots, co2, nile")
    src.add_argument("--csv", help="your long-format CSV or Parquet with exactly the columns unique_id, ds, y "
                                   "(ds: dates or integers)")
    p.add_argument("--freq", type=freq_flag, help="with --csv: the step between times, a pandas offset alias (MS, ME, "
                                                  "QE-DEC, W-SUN, D, h), months=1 (the same day of every month; "
                                                  "also years=, weeks=, days=, hours=, minutes=) or an integer for "
                                                  "integer ds; every series is checked on it, and the season follows "
                                                  "an alias (default: each series' own, inferred)")
    p.add_argument("--future", action="store_true", help="fit on all history and write the next --horizon steps "
                                                         "of every series to forecasts.csv (no backtest)")
    p.add_argument("--horizon", type=positive_int, help="steps ahead (default: the set's own; needed with --csv)")
    p.add_argument("--season-length", type=positive_int, help="seasonal period (default: the set's, or inferred "
                                                              "from datetime ds, with a warning when it falls back "
                                                              "to 1)")
    p.add_argument("--folds", type=positive_int, default=1, help="rolling origins, H steps apart (the last = the "
                                                                 "test split)")
    p.add_argument("--limit", type=positive_int, help="use only the first N series (quick runs; default: all)")
    p.add_argument("--input-length", type=positive_int, help="values per input window (default: max(2H, 3m))")
    p.add_argument("--model", choices=("lstm", "esrnn"), default="lstm",
                   help="lstm: a global LSTM on level-scaled windows; esrnn: Smyl's ES-RNN, per-series Holt-Winters "
                        "level and seasonality learned with a global LSTM (no covariates)")
    p.add_argument("--level-penalty", type=non_negative, default=0.0,
                   help="esrnn: weight of the penalty on the wiggliness of the learned log level")
    p.add_argument("--loss-weights", choices=("none", "mase"), default=None,
                   help="esrnn: 'mase' weighs each origin by its level over the series' MASE scale (the loss then "
                        "approximates MASE), 'none' weighs all alike (default: the model's own)")
    p.add_argument("--seasonality", choices=("all", "tested"), default=None,
                   help="esrnn: 'tested' gives seasonal indices only to series passing the 90%% autocorrelation test "
                        "at lag m (the M4 benchmarks' rule), 'all' to every series (default: all)")
    p.add_argument("--trend", choices=("none", "damped"), default=None,
                   help="esrnn: 'damped' adds a damped trend to the smoothed log level (default: none, the LSTM "
                        "carries any trend)")
    p.add_argument("--dilations", type=dilation_block, nargs="+", default=None, metavar="D[,D...]",
                   help="esrnn: Smyl's dilated LSTM stack in place of the one layer, a block of layers per argument, "
                        "a layer per dilation (its step reads the state D origins back), residual connections "
                        "between blocks: '--dilations 1,3 6,12' is ((1, 3), (6, 12)) (default: one plain layer)")
    p.add_argument("--snapshots", type=positive_int, default=1,
                   help="esrnn: each member's forecast is the mean of those of its last N training epochs (a "
                        "snapshot ensemble; 1: the last epoch alone)")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="after early stopping, train a fresh model on every window (the validation window, each "
                        "series' latest values, included) for the best epoch count (default: the model's own)")
    p.add_argument("--ensemble", type=positive_int, default=1, help="models with different seeds and input "
                                                                    "lengths; the median forecast is used")
    p.add_argument("--batches-per-epoch", type=positive_int, default=16, help="random batches of windows per epoch")
    p.add_argument("--baselines", type=baselines, default=",".join(DEFAULT),
                   help=f"comma-separated subset of: {', '.join(METHODS)} (statsmodels' Theta and damped ETS; "
                        "prophet needs pip install 'lstmkit[prophet]' and takes ~0.3 s a series; each one's "
                        "seconds are in the table)")
    add_common(p, epochs=30, batch_size=None, lr=None, hidden=64,  # None: the model's own (below)
               batch_help="windows (lstm) or series (esrnn) per training step (default: 512 lstm, 32 esrnn)",
               lr_help="Adam's learning rate (default: 3e-3 lstm, 1e-3 esrnn)")
    add_output(p)
    p.set_defaults(func=run, patience=5)


def baselines(text: str) -> tuple:
    """--baselines' type: the names, each known and its package installed (a usage error before any work)."""
    from ..tasks.forecast.baselines import require_methods

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    try:
        require_methods(methods)
    except (ValueError, ImportError) as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--baselines: ")) from None
    return methods


def dilation_block(text: str) -> list:
    """--dilations' type: one block, comma-separated positive integers ('1,3' -> [1, 3]); a usage error before
    any work."""
    parts = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(t.isdigit() and int(t) >= 1 for t in parts):
        raise argparse.ArgumentTypeError(f"expected a block of comma-separated positive integers such as 1,3 "
                                         f"(blocks separated by spaces: 1,3 6,12), got {text!r}")
    return [int(t) for t in parts]


OFFSET_UNITS = ("years", "months", "weeks", "days", "hours", "minutes")  # --freq UNIT=N: pd.DateOffset(UNIT=N)


def freq_flag(text: str):
    """--freq's type: an integer step, a pandas offset alias, or UNIT=N for ``pd.DateOffset(UNIT=N)`` (monthly on
    the 15th has no alias); a usage error before any work."""
    from ..tasks.forecast.panel import check_freq

    text = text.strip()
    unit, eq, n = text.partition("=")
    try:
        if eq:
            if unit.strip() not in OFFSET_UNITS or not n.strip().isdigit() or int(n) < 1:
                raise ValueError(f"expected UNIT=N with UNIT one of {', '.join(OFFSET_UNITS)} and N a positive "
                                 f"integer, got {text!r}")
            import pandas as pd

            return check_freq(pd.DateOffset(**{unit.strip(): int(n)}))
        return check_freq(int(text) if text.lstrip("-").isdigit() else text)
    except (ValueError, TypeError) as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("freq: ")) from None


def run(args) -> int:
    from ..tasks.forecast import job as forecast_job
    from ..tasks.forecast.baselines import DEFAULT
    from ..tasks.cli_common import out_dir

    methods = args.baselines  # a string default goes through baselines() too
    dataset = args.dataset or ("tourism-quarterly" if args.csv is None else None)
    if args.csv is not None and args.horizon is None:
        raise ValueError("--horizon is needed with --csv")
    if args.future:
        refuse_unused(args, {"folds": 1, "baselines": baselines(",".join(DEFAULT))},
                      "only for the backtest, not with --future")
    out = out_dir(args, "forecast")
    if args.level_penalty and args.model != "esrnn":
        raise ValueError("--level-penalty: only --model esrnn has a learned level")
    if args.loss_weights is not None and args.model != "esrnn":
        raise ValueError(f"--loss-weights: only --model esrnn weighs its loss, got {args.loss_weights!r} with "
                         f"--model {args.model}")
    if args.seasonality is not None and args.model != "esrnn":
        raise ValueError(f"--seasonality: only --model esrnn smooths a season, got {args.seasonality!r} with "
                         f"--model {args.model}")
    if args.trend is not None and args.model != "esrnn":
        raise ValueError(f"--trend: only --model esrnn smooths a trend, got {args.trend!r} with --model {args.model}")
    if args.dilations is not None and args.model != "esrnn":
        raise ValueError(f"--dilations: only --model esrnn has a dilated stack, got "
                         f"{' '.join(','.join(map(str, b)) for b in args.dilations)} with --model {args.model}")
    if args.snapshots != 1 and args.model != "esrnn":
        raise ValueError(f"--snapshots: only --model esrnn keeps snapshot ensembles, got {args.snapshots} with "
                         f"--model {args.model}")
    extra = {"model": args.model, "refit": args.refit,
             **({"level_penalty": args.level_penalty, "loss_weights": args.loss_weights,
                 "seasonality": args.seasonality, "snapshots": args.snapshots, "trend": args.trend,
                 "dilations": args.dilations}
                if args.model == "esrnn" else {})}
    model_kw = dict(**extra, input_length=args.input_length, hidden_size=args.hidden_size, cell=args.cell,
                    epochs=args.epochs, batch_size=args.batch_size, batches_per_epoch=args.batches_per_epoch,
                    lr=args.lr, patience=args.patience, ensemble=args.ensemble, seed=args.seed,
                    progress=show_progress(args), device=args.device)
    common = dict(out=out, dataset=dataset, csv=args.csv, horizon=args.horizon, season_length=args.season_length,
                  limit=args.limit, resume=args.resume, log=log_for(args), freq=args.freq)
    if args.future:
        summary = forecast_job.run_future(**common, **model_kw)
    else:
        summary = forecast_job.run(**common, folds=args.folds, methods=methods, **model_kw)
    emit(args, summary)
    return 0
