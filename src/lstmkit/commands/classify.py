"""``lstmkit classify``: an LSTM sequence classifier on a bundled set or a CSV of text,label, compared with
majority-class and logistic-regression baselines in the same run."""
import argparse

DEFAULTS = dict(hidden_size=64, num_layers=1, bidirectional=False, cell="lstm", epochs=40, batch_size=64, lr=5e-3,
                patience=8, dropout=0.0, lr_schedule="constant", augment=None)


def register(sub) -> None:
    from ..tasks.classify_presets import PRESETS
    from ..tasks.cli_common import add_common

    p = sub.add_parser("classify", help="train an LSTM classifier (digits, japanese-vowels or a text CSV) "
                                        "and compare it with baselines")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="bundled set: digits (default), japanese-vowels")
    src.add_argument("--csv", help="your CSV with a text and a label column (char-level model)")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default="label")
    p.add_argument("--limit", type=int, help="use only this many training cases (quick runs)")
    p.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--num-layers", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None)
    p.add_argument("--augment", choices=("none", "shift"), default=None,
                   help="shift: train also on copies moved one step in time and one feature position (images)")
    add_common(p, epochs=DEFAULTS["epochs"], batch_size=DEFAULTS["batch_size"], lr=DEFAULTS["lr"],
               hidden=DEFAULTS["hidden_size"])
    # None = not given: the data set's preset (tasks.classify_presets.PRESETS) or DEFAULTS decides
    p.set_defaults(func=run, **{k: None for k in DEFAULTS})
    p.epilog = ("Per-data-set presets (flags given win): " +
                "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in kw.items()) for name, kw in PRESETS.items()))


def run(args) -> int:
    from ..tasks.classify_job import run as job
    from ..tasks.classify_presets import PRESETS
    from ..tasks.cli_common import out_dir

    out = out_dir(args, "classify")
    dataset = args.dataset or ("digits" if args.csv is None else None)
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    model_kw = {**DEFAULTS, **PRESETS.get(dataset, {}), **given}
    if model_kw["augment"] == "none":
        model_kw["augment"] = None
    job(out=out, dataset=dataset, csv=args.csv, text_col=args.text_col, label_col=args.label_col, limit=args.limit,
        resume=args.resume, seed=args.seed, progress=not args.no_progress, **model_kw)
    return 0
