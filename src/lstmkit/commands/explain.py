"""``lstmkit explain MODEL --data FILE``: top units, forget-gate resets and saturation warnings, in the terminal."""

from ._flags import finite, non_negative_int, positive_int


def register(sub) -> None:
    e = sub.add_parser("explain", help="print what a model does on one input: top units, resets, saturation")
    e.add_argument("model", help="a model file lstmkit can read (e.g. a .safetensors written by lstmkit.save), or "
                                 "the run folder of lstmkit classify/forecast/generate")
    e.add_argument("--data",
                   help=".npy array (T, B, I) or (T, I) (a classify model's raw sequence: standardised as in "
                        "training), or a text file (char-level one-hot over the vocabulary); not for a forecast "
                        "model (see --series)")
    e.add_argument("--series", help="a forecast model: the series whose last window to read, by id (default: the "
                                   "first of the series the model carries)")
    e.add_argument("--vocab", help="characters of the vocabulary, or a file holding them, when the model stores none")
    e.add_argument("--batch", type=non_negative_int, default=0,
                   help="which sequence of the batch to explain (default 0)")
    e.add_argument("--top", type=positive_int, default=5, help="how many units to list (default 5)")
    e.add_argument("--reset-threshold", type=finite, default=0.5,
                   help="a step is a reset where the mean forget gate (GRU: update gate) is below this (default 0.5)")
    e.set_defaults(func=run)


def run(args) -> int:
    from ..introspect.trace import trace
    from ..introspect.views import findings

    from ._task_model import layer_and_input

    layer, x, text, _ = layer_and_input(args)
    tr = trace(layer, x)
    if not 0 <= args.batch < tr.batch:
        raise ValueError(f"--batch: expected a sequence index in [0, {tr.batch}), got {args.batch}")
    print(f"{tr.config.mode} on sequence {args.batch} of {tr.batch} ({int(tr.lengths[args.batch])} steps)")
    for title, lines in findings(tr, args.batch, text, k=args.top, reset_threshold=args.reset_threshold):
        print(f"\n{title}")
        for line in lines:
            print(f"  {line}")
    return 0
