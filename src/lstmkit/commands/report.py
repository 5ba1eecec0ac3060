"""``lstmkit report MODEL --data FILE --out FILE.html``: one self-contained HTML report (lstmkit.introspect.report)."""


def register(sub) -> None:
    r = sub.add_parser("report", help="write a self-contained HTML report of a model on one input "
                                      "(gates, states, saturation, gradient through time, interactive view)")
    r.add_argument("model", help="a model file lstmkit can read (e.g. a .safetensors written by lstmkit.save), or "
                                 "the run folder of lstmkit classify/forecast/generate")
    r.add_argument("--data", required=True,
                   help=".npy array (T, B, I) or (T, I) (a classify model's raw sequence: standardised as in "
                        "training), or a text file (char-level one-hot over the vocabulary)")
    r.add_argument("--vocab", help="characters of the vocabulary, or a file holding them, when the model stores none")
    r.add_argument("--out", required=True, help="the HTML file to write")
    r.add_argument("--batch", type=int, default=0, help="which sequence of the batch to show (default 0)")
    r.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    r.set_defaults(func=run)


def run(args) -> int:
    from ..introspect.report import read_data, write_report
    from ..introspect.trace import to_layer

    from ._task_model import resolve, scaled

    model = resolve(args.model)
    layer = to_layer(model)
    x, text = read_data(args.data, layer, args.vocab, model)
    x = scaled(model, x, args.data)
    path = write_report(layer, x, args.out, text=text, batch=args.batch, overwrite=args.overwrite,
                        title=f"lstmkit report: {args.model}")
    print(f"wrote {path}")
    return 0
