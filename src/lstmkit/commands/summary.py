"""``lstmkit summary``: weight shapes and parameter counts (torch and Keras) of an architecture or a model file."""
import re

from ._flags import non_negative_int, positive_int, refuse_unused

# the architecture flags with their defaults: a model FILE brings its own
SIZES = {"input_size": None, "hidden_size": None, "num_layers": 1, "bidirectional": False, "proj_size": 0,
         "no_bias": False}


def register(sub) -> None:
    s = sub.add_parser("summary", help="weight shapes and parameter counts (torch and Keras) of an architecture "
                                       "or of a model file (.pt/.pth, .safetensors, .keras, .onnx)")
    s.add_argument("file", nargs="?", help="a model file to summarise instead of the size flags")
    s.add_argument("--mode", choices=["lstm", "gru", "LSTM", "GRU"], default=None)
    s.add_argument("--input-size", type=positive_int)
    s.add_argument("--hidden-size", type=positive_int)
    s.add_argument("--num-layers", type=positive_int, default=SIZES["num_layers"])
    s.add_argument("--bidirectional", action="store_true")
    s.add_argument("--proj-size", type=non_negative_int, default=SIZES["proj_size"])
    s.add_argument("--no-bias", action="store_true")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..params import RNNConfig
    from ..summary import summary

    if args.file is not None:
        from ..io import read

        refuse_unused(args, SIZES, "the model FILE says its sizes")
        torch_file = args.file.lower().endswith((".pt", ".pth"))
        if not torch_file:
            refuse_unused(args, {"mode": None}, "only for a .pt/.pth FILE, whose shapes may not say LSTM or GRU")
        options = {"mode": args.mode} if torch_file and args.mode else {}
        print(summary(read(args.file, **options)))
        return 0
    if args.input_size is None or args.hidden_size is None:
        raise ValueError("give a model FILE, or --input-size and --hidden-size")
    args.mode = args.mode or "lstm"
    try:
        config = RNNConfig(args.mode.upper(), args.input_size, args.hidden_size, args.num_layers, not args.no_bias,
                           bidirectional=args.bidirectional, proj_size=args.proj_size)
    except ValueError as e:
        raise ValueError(as_flags(str(e))) from None
    print(summary(config))
    return 0


def as_flags(message: str) -> str:
    """RNNConfig's message with its argument names (proj_size, hidden_size=10) written as this command's flags."""
    return re.sub(r"\b(input_size|hidden_size|num_layers|proj_size)\b",
                  lambda m: "--" + m.group(1).replace("_", "-"), message)
