"""``lstmkit predict --model CKPT``: use a model saved by classify, forecast or generate on new data."""
import sys


def register(sub) -> None:
    p = sub.add_parser("predict", help="apply a saved model (from classify, forecast or generate) to new data")
    p.add_argument("--model", required=True, help="checkpoint: best.safetensors (classify) or model.safetensors")
    p.add_argument("--csv", help="classify: CSV with a text column (text models) or one row per sequence; "
                                 "forecast: long-format CSV unique_id, ds, y")
    p.add_argument("--text-col", default="text")
    p.add_argument("--prompt", default="", help="generate: text to continue")
    p.add_argument("--n-chars", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--output", help="write predictions to this CSV (refused if it exists); default: print")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from ..tasks.checkpoint import load

    task = load(args.model)["task"]
    if args.output and os.path.exists(args.output):
        raise FileExistsError(f"--output {args.output} exists; choose a new file name")
    if task == "generate":
        from ..tasks.generate import CharLM

        print(CharLM.load(args.model).sample(args.prompt, args.n_chars, args.temperature, args.top_k))
        return 0
    if args.csv is None:
        raise ValueError(f"--csv is needed to predict with a {task} model")
    import pandas as pd

    df = pd.read_csv(args.csv)
    if task == "forecast":
        from ..tasks.forecast import Forecaster

        result = Forecaster.load(args.model).predict(df)
    elif task == "classify":
        import numpy as np

        from ..tasks.classify import SequenceClassifier

        clf = SequenceClassifier.load(args.model)
        if clf.config_["text"]:
            X = df[args.text_col].astype(str).tolist()
        else:  # one row per sequence: T·F numbers, read as T steps of F features
            F = len(clf.config_["mean"])
            X = [np.asarray(r, np.float32).reshape(-1, F) for r in df.to_numpy(np.float32)]
        proba = clf.predict_proba(X)
        result = pd.DataFrame({"prediction": clf.classes_[proba.argmax(1)], "probability": proba.max(1)})
    else:
        raise ValueError(f"{args.model}: unknown task {task!r}")
    if args.output:
        result.to_csv(args.output, index=False)
        print(f"wrote {len(result)} rows to {args.output}")
    else:
        result.to_csv(sys.stdout, index=False)
    return 0
