"""``lstmkit predict --model CKPT``: use a model saved by classify, forecast or generate on new data."""
import sys
from pathlib import Path

from ..tasks.cli_common import device
from ._flags import DefaultsHelp, non_negative_int, positive, positive_int, refuse_unused


# Flags that only some tasks' models read: {dest: (default, tasks)}. One given (a value other than its default)
# for a model of another task would be ignored, so it is refused by name instead.
TASK_FLAGS = {"csv": (None, ("classify", "forecast")), "ts": (None, ("classify",)),
              "futr_csv": (None, ("forecast",)), "text_col": ("text", ("classify",)),
              "id_col": ("id", ("classify",)), "step_col": ("step", ("classify",)),
              "feature_cols": (None, ("classify",)), "label_col": (None, ("classify",)),
              "prompt": ("", ("generate",)), "n_chars": (300, ("generate",)), "temperature": (0.8, ("generate",)),
              "top_k": (20, ("generate",)), "seed": (0, ("generate",))}


def register(sub) -> None:
    p = sub.add_parser("predict", formatter_class=DefaultsHelp,
                       help="apply a saved model (from classify, forecast or generate) to new data")
    p.add_argument("--model", required=True, help="checkpoint: best.safetensors (classify) or model.safetensors")
    p.add_argument("--csv", help="CSV or Parquet. classify, text model: a --text-col column; classify, numeric model: "
                                 "long format, one row per case and step (--id-col, --step-col, the model's "
                                 "feature columns); forecast: long format with the model's id, time and target "
                                 "columns (unique_id, ds, y unless it was fit with others)")
    p.add_argument("--ts", help="classify, numeric model: an aeon/UCR-UEA .ts file")
    p.add_argument("--futr-csv", help="forecast, a model with futr_exog_list: CSV or Parquet of those covariates "
                                      "at each series' next H times (id, time and those columns)")
    p.add_argument("--text-col", help="text models: the text column (default: %(default)s)")
    p.add_argument("--id-col", help="numeric classify: the case id column (default: %(default)s)")
    p.add_argument("--step-col", help="numeric classify: the time step column (default: %(default)s)")
    p.add_argument("--feature-cols", help="numeric classify: comma-separated feature columns in the model's order "
                                          "(default: the names the model was trained with)")
    p.add_argument("--label-col", help="classify: a column of true labels; predictions are scored against it "
                                       "(default: none, and any column the model does not read is an error)")
    p.add_argument("--prompt", help="generate: text to continue (default: empty)")
    p.add_argument("--n-chars", type=positive_int, help="generate: characters to sample")
    p.add_argument("--temperature", type=positive, help="generate: sampling temperature")
    p.add_argument("--top-k", type=positive_int, default=TASK_FLAGS["top_k"][0],
                   help="generate: sample among the k likeliest characters")
    p.add_argument("--seed", type=non_negative_int, help="generate: the sample's random seed (the same seed, the "
                                                         "same text)")
    p.add_argument("--device", type=device, default="cpu",
                   help="where the model runs: cpu, cuda, cuda:N or mps (checked before any work)")
    p.add_argument("--output", help="write predictions to this CSV (generate: the sampled text to this file; "
                                    "refused if it exists); default: print")
    p.set_defaults(func=run, **{dest: default for dest, (default, _) in TASK_FLAGS.items()})


def _numeric_cases(args, clf, df, path: str):
    """(ids, X, labels or None) from a long-format table, reading exactly the columns the model needs."""
    from ..tasks.classify.data import long_sequences
    from ..tasks.tables import need_columns

    features = [c.strip() for c in args.feature_cols.split(",")] if args.feature_cols else clf.config_.get("features")
    if features is None:
        raise ValueError(f"--feature-cols: this model was trained without column names (a bundled set or a .ts "
                         f"file); name its {clf.n_channels_} feature column(s) in order")
    if len(features) != clf.n_channels_:
        raise ValueError(f"--feature-cols: the model reads {clf.n_channels_} feature(s) per step, got "
                         f"{len(features)} ({', '.join(features)})")
    trained = clf.config_.get("features")
    if trained and features != list(trained) and sorted(features) == sorted(trained):
        # the columns are read by position: the trained names in another order would swap the channels silently
        raise ValueError(f"--feature-cols: the model was trained on {', '.join(trained)} in that order, got "
                         f"{', '.join(features)}; give them in the trained order (or leave --feature-cols out)")
    need_columns(df, [args.id_col, args.step_col, *features] + ([args.label_col] if args.label_col else []), path)
    known = {args.id_col, args.step_col, *features} | ({args.label_col} if args.label_col else set())
    extra = [str(c) for c in df.columns if c not in known]
    if extra:
        raise ValueError(f"{path}: column(s) {', '.join(extra)} are not read by this model (id {args.id_col!r}, "
                         f"step {args.step_col!r}, features {', '.join(features)}); pass --label-col NAME to score "
                         "against a label column, or drop the others")
    ids, X, y, _ = long_sequences(df, path, args.id_col, args.step_col, features, args.label_col)
    return ids, X, y


def _classify(args, model_path: str):
    import numpy as np
    import pandas as pd

    from ..tasks.classify import SequenceClassifier
    from ..tasks.classify.data import load_ts, text_column
    from ..tasks.tables import need_columns, read_table

    clf = SequenceClassifier.load(model_path, device=args.device)
    if args.ts is not None:
        if clf.config_["text"]:
            raise ValueError("--ts: this is a text model; give --csv with a text column")
        data = load_ts(args.ts, with_test=False)  # the file's own cases only, checked as classify --ts does
        ids, X, y = list(range(len(data.X))), data.X, data.y
    elif args.csv is None:
        raise ValueError("--csv or --ts is needed to predict with a classify model")
    else:
        df = read_table(args.csv, "--csv", text=clf.config_["text"])
        if clf.config_["text"]:
            need_columns(df, [args.text_col] + ([args.label_col] if args.label_col else []), args.csv,
                         "--text-col/--label-col")
            ids, X = None, text_column(df, args.text_col, args.csv, "--text-col")  # rows in file order: no id column
            y = np.asarray(text_column(df, args.label_col, args.csv, "--label-col")) if args.label_col else None
        else:
            ids, X, y = _numeric_cases(args, clf, df, args.csv)
    proba = clf.predict_proba(X)
    pred = clf.classes_[proba.argmax(1)]
    result = pd.DataFrame({"prediction": pred, "probability": proba.max(1)})
    if ids is not None:
        result.insert(0, args.id_col, ids)
    if y is not None:
        result["label"] = y
        print(f"accuracy {np.mean(pred.astype(str) == np.asarray(y).astype(str)):.4f} on {len(y)} cases",
              file=sys.stderr)
    return result


def _forecast(args):
    """The next H steps of every series in --csv (with --futr-csv's future covariates when the model reads
    some); a text time column is read as dates."""
    import pandas as pd

    from ..tasks.forecast import Forecaster
    from ..tasks.tables import need_columns, read_table

    if args.csv is None:
        raise ValueError("--csv is needed to predict with a forecast model")
    fc = Forecaster.load(args.model, device=args.device)
    time_col = fc.columns.time_col

    def table(path, flag):
        df = read_table(path, flag)
        cols = fc.columns
        wanted = [cols.id_col, time_col] + ([cols.target_col] if flag == "--csv" else [])
        # named here, by flag and file: the estimator's message would name its argument df
        need_columns(df, wanted, f"{flag} {path}",
                     hint=f"this model reads {', '.join(map(repr, wanted))}, the names its training data had")
        t = df.get(time_col)
        if t is not None and not pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_datetime64_any_dtype(t):
            try:
                df[time_col] = pd.to_datetime(t)
            except (ValueError, TypeError):
                raise ValueError(f"{flag} {path}: column {time_col} holds neither dates nor integers (e.g. "
                                 f"{t.iloc[0]!r})") from None
        return df

    futr = table(args.futr_csv, "--futr-csv") if args.futr_csv else None
    return fc.predict(table(args.csv, "--csv"), futr_df=futr)


def check_task_flags(args, task: str) -> None:
    """ValueError naming the first flag given that a ``task`` model does not read (it would be ignored)."""
    for dest, (default, tasks) in TASK_FLAGS.items():
        if task not in tasks:
            refuse_unused(args, {dest: default}, f"a {task} model does not read it (only {' and '.join(tasks)} "
                                                 "models do)")


def _generate(args) -> int:
    """A sample of the character model: printed, or written to --output (atomically: never half a file)."""
    from ..tasks.generate import CharLM

    lm = CharLM.load(args.model, device=args.device)
    text = lm.sample(args.prompt, args.n_chars, args.temperature, args.top_k, seed=args.seed)
    if not args.output:
        print(text)
        return 0
    from ..io.files import atomic_write

    atomic_write(args.output, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    print(f"wrote {len(text)} characters to {args.output}")
    return 0


def run(args) -> int:
    import os

    from ..tasks.checkpoint import load

    task = load(args.model)["task"]
    if task not in ("classify", "forecast", "generate"):
        raise ValueError(f"{args.model}: unknown task {task!r}")
    if args.output and os.path.exists(args.output):
        raise FileExistsError(f"--output {args.output} exists; choose a new file name")
    folder = os.path.dirname(args.output) if args.output else ""
    if folder and not os.path.isdir(folder):  # checked before the work, not when the result is written
        raise FileNotFoundError(f"--output {args.output}: no folder {folder}")
    check_task_flags(args, task)
    if task == "generate":
        return _generate(args)
    result = _forecast(args) if task == "forecast" else _classify(args, args.model)
    if args.output:
        from ..io.files import atomic_write

        atomic_write(args.output, lambda tmp: result.to_csv(tmp, index=False))  # no half-written CSV on failure
        print(f"wrote {len(result)} rows to {args.output}")
    else:
        result.to_csv(sys.stdout, index=False)
    return 0
