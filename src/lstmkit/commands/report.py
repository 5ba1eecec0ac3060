"""``lstmkit report MODEL --data FILE --out FILE.html`` (a forecast model: ``--series ID``): one self-contained
HTML report (lstmkit.introspect.report)."""
from ._flags import non_negative_int


def register(sub) -> None:
    r = sub.add_parser("report", help="write a self-contained HTML report of a model on one input "
                                      "(gates, states, saturation, gradient through time, interactive view)")
    r.add_argument("model", help="a model file lstmkit can read (e.g. a .safetensors written by lstmkit.save), or "
                                 "the run folder of lstmkit classify/forecast/generate")
    r.add_argument("--data",
                   help=".npy array (T, B, I) or (T, I) (a classify model's raw sequence: standardised as in "
                        "training), or a text file (char-level one-hot over the vocabulary); not for a forecast "
                        "model (see --series)")
    r.add_argument("--series", help="a forecast model: the series whose last window to read, by id (default: the "
                                   "first of the series the model carries)")
    r.add_argument("--vocab", help="characters of the vocabulary, or a file holding them, when the model stores none")
    r.add_argument("--out", required=True, help="the HTML file to write")
    r.add_argument("--batch", type=non_negative_int, default=0, help="which sequence of the batch to show (default 0)")
    r.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    r.set_defaults(func=run)


def run(args) -> int:
    from ..introspect.report import write_report

    from ..io.files import check_not_source

    from ._task_model import layer_and_input, resolve

    # the model file a run folder stands for, so that --out RUN/model.safetensors is caught too; and the inputs
    check_not_source(args.out, resolve(args.model), "--out", "the model file")
    for flag, source in (("--data", args.data), ("--vocab", args.vocab)):
        if source is not None:
            check_not_source(args.out, source, "--out", f"the {flag} file")
    layer, x, text, title = layer_and_input(args)
    sequences = 1 if x.ndim == 2 else x.shape[0 if layer.config.batch_first else 1]
    if not 0 <= args.batch < sequences:
        raise ValueError(f"--batch: expected a sequence index in [0, {sequences}), got {args.batch}")
    path = write_report(layer, x, args.out, text=text, batch=args.batch, overwrite=args.overwrite, title=title)
    print(f"wrote {path}")
    return 0
