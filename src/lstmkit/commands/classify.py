"""``lstmkit classify``: an LSTM sequence classifier on a bundled set (digits, japanese-vowels, every UCR/UEA set
aeon ships), an aeon .ts file, a long-format table of numeric sequences, or a CSV of text,label; compared with
majority-class, logistic-regression, 1-NN DTW and MiniRocket baselines in the same run."""
import argparse

from ._flags import (DefaultsHelp, add_output, dropout_rate, emit, log_for, positive_int, refuse_unused,
                     show_progress)

# the column flags with their defaults and the data sources that read them: given for another source, refused
COLUMNS = {"text_col": ("text", ("csv",)), "label_col": ("label", ("csv", "sequences")),
           "id_col": ("id", ("sequences",)), "step_col": ("step", ("sequences",)),
           "feature_cols": (None, ("sequences",))}
DEFAULTS = dict(hidden_size=64, num_layers=1, bidirectional=False, cell="lstm", epochs=40, batch_size=64, lr=5e-3,
                patience=8, dropout=0.0, lr_schedule="constant", augment=None, arch="lstm", normalize="auto",
                validation="auto", n_folds=5, ensemble=1, precision="float32")


def register(sub) -> None:
    from ..tasks.classify.presets import ARCH_PRESETS, PRESETS
    from ..tasks.cli_common import add_common

    from ..tasks.classify.data import CLASSIFY_SETS, aeon_bundled_sets

    p = sub.add_parser("classify", formatter_class=DefaultsHelp,
                       help="train an LSTM classifier (a bundled UCR/UEA set, a .ts file, numeric "
                                        "sequences or a text CSV) and compare it with baselines")
    src = p.add_mutually_exclusive_group()
    try:
        bundled = ", ".join(aeon_bundled_sets().values())
    except ImportError:
        bundled = "(aeon not installed)"
    src.add_argument("--dataset", default=None, help=f"bundled set: {', '.join(CLASSIFY_SETS)} (default: digits); "
                                                     f"aeon's UCR/UEA sets, any case: {bundled}")
    src.add_argument("--ts", help="an aeon/UCR-UEA classification .ts file (a *_TEST.ts beside a *_TRAIN.ts is "
                                  "the test split)")
    src.add_argument("--sequences", help="your long-format CSV or Parquet of numeric sequences: one row per case and "
                                         "step (--id-col, --step-col, --feature-cols, --label-col)")
    src.add_argument("--csv", help="your CSV (or Parquet) with a text and a label column (char-level model)")
    p.add_argument("--text-col", help="--csv: the text column (default: %(default)s)")
    p.add_argument("--label-col", help="--csv/--sequences: the label column (default: %(default)s)")
    p.add_argument("--id-col", help="--sequences: the case id column (default: %(default)s)")
    p.add_argument("--step-col", help="--sequences: the time step column, sorted within a case "
                                                      "(default: %(default)s)")
    p.add_argument("--feature-cols", help="--sequences: comma-separated feature columns (default: every column "
                                          "but id, step and label)")
    p.add_argument("--limit", type=positive_int, help="use only this many training cases (quick runs; default: all)")
    p.add_argument("--arch", choices=("lstm", "lstm-fcn"), default=None,
                   help="lstm: an LSTM read out by last state + mean + max; lstm-fcn: LSTM-FCN (Karim et al. 2018), "
                        "a fully convolutional branch beside an LSTM on the dimension-shuffled series (default: lstm; "
                        "its settings: see below)")
    p.add_argument("--normalize", choices=("global", "case", "auto"), default=None,
                   help="global: scale each channel by the training set's mean/std; case: z-normalise every case "
                        "per channel first; auto: case for univariate, global for multivariate data (default: auto)")
    p.add_argument("--validation", choices=("auto", "holdout", "fixed", "kfold"), default=None,
                   help="holdout: early stopping on a 15%% split; fixed: all --epochs, no early stopping; kfold: the "
                        "epoch count chosen by --folds-fold cross-validation, then all data; auto: holdout when the "
                        "split holds >= 50 cases, else fixed (default: auto)")
    p.add_argument("--folds", dest="n_folds", type=positive_int, default=None,
                   help="--validation kfold: the number of folds (default: 5)")
    p.add_argument("--ensemble", type=positive_int, default=None,
                   help="train this many networks (seeds --seed, --seed+1, ...) and average their class "
                        "probabilities (default: 1; --arch lstm-fcn: see below)")
    p.add_argument("--precision", choices=("float32", "bfloat16", "auto"), default=None,
                   help="--arch lstm-fcn: bfloat16 runs the convolutions' products in bfloat16 while training on the "
                        "CPU (float32 weights, batch norm and predictions; ~2.3x faster where the CPU has "
                        "AVX512_BF16 or AMX, slower elsewhere); auto: bfloat16 on such a CPU, else float32 "
                        "(default: float32; --arch lstm-fcn: see below)")
    p.add_argument("--baselines", default="auto",
                   help="comma-separated: logistic, dtw (1-NN DTW, aeon), minirocket (aeon); none; auto: all three "
                        "on numeric data (DTW skipped past 5e10 DTW cells, with a message), logistic on text "
                        "(default: %(default)s)")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                   help="read each sequence both ways (default: the set's preset, else off)")
    p.add_argument("--num-layers", type=positive_int, default=None, help="stacked recurrent layers (default: 1)")
    p.add_argument("--dropout", type=dropout_rate, default=None, help="dropout between layers and before the head "
                                                               "(default: 0)")
    p.add_argument("--lr-schedule", choices=("constant", "cosine", "plateau"), default=None,
                   help="cosine: decay the learning rate to 0 over --epochs; plateau: multiply it by 2^-1/3 after 10 "
                        "epochs without a lower training loss, down to --lr/10, and stop at a plateau there (at most "
                        "--epochs) (default: the set's preset, else constant)")
    p.add_argument("--augment", choices=("none", "shift"), default=None,
                   help="shift: train also on copies moved one step in time and one feature position (images; "
                        "default: the set's preset, else none)")
    add_common(p, epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
               hidden=DEFAULTS["hidden_size"])
    add_output(p)
    # None = not given: the data set's preset (tasks.classify.presets.PRESETS) or DEFAULTS decides
    p.set_defaults(func=run, **{k: None for k in DEFAULTS}, **{k: default for k, (default, _) in COLUMNS.items()})
    p.epilog = ("Per-data-set presets, --arch lstm only (flags given win): " +
                "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in kw.items()) for name, kw in PRESETS.items())
                + ". --arch lstm-fcn: " + ", ".join(f"{k}={v}" for k, v in ARCH_PRESETS["lstm-fcn"].items()))


def check_flags(args, model_kw: dict) -> None:
    """ValueError naming a flag this run would ignore: a column flag of another data source, --folds without
    --validation kfold (checked before the run folder is made)."""
    source = next((name for name in ("csv", "ts", "sequences") if getattr(args, name) is not None), "dataset")
    for dest, (default, sources) in COLUMNS.items():
        if source not in sources:
            refuse_unused(args, {dest: default}, f"only read from {' or '.join('--' + s for s in sources)}, not "
                                                 f"--{source}")
    if model_kw["validation"] != "kfold" and args.n_folds is not None:
        raise ValueError(f"--folds: only with --validation kfold, not {model_kw['validation']}, got {args.n_folds}")


def run(args) -> int:
    from ..tasks.classify.job import run as job
    from ..tasks.classify.presets import ARCH_PRESETS, PRESETS
    from ..tasks.cli_common import out_dir

    sources = (args.csv, args.ts, args.sequences)
    dataset = args.dataset or ("digits" if all(v is None for v in sources) else None)
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    arch = given.get("arch", DEFAULTS["arch"])
    model_kw = {**DEFAULTS, **ARCH_PRESETS[arch], **(PRESETS.get(dataset, {}) if arch == "lstm" else {}), **given}
    check_flags(args, model_kw)
    out = out_dir(args, "classify")
    if model_kw["augment"] == "none":
        model_kw["augment"] = None
    features = [c.strip() for c in args.feature_cols.split(",") if c.strip()] if args.feature_cols else None
    summary = job(out=out, dataset=dataset, csv=args.csv, ts=args.ts, sequences=args.sequences,
                  text_col=args.text_col, label_col=args.label_col, id_col=args.id_col, step_col=args.step_col,
                  feature_cols=features, limit=args.limit, resume=args.resume, seed=args.seed,
                  progress=show_progress(args), log=log_for(args), device=args.device, baselines=args.baselines,
                  **model_kw)
    emit(args, summary)
    return 0
