"""``lstmkit summary``: weight shapes and parameter counts (torch and Keras) of an architecture."""


def register(sub) -> None:
    s = sub.add_parser("summary", help="weight shapes and parameter counts (torch and Keras) of an architecture")
    s.add_argument("--mode", choices=["lstm", "gru", "LSTM", "GRU"], default="lstm")
    s.add_argument("--input-size", type=int, required=True)
    s.add_argument("--hidden-size", type=int, required=True)
    s.add_argument("--num-layers", type=int, default=1)
    s.add_argument("--bidirectional", action="store_true")
    s.add_argument("--proj-size", type=int, default=0)
    s.add_argument("--no-bias", action="store_true")
    s.set_defaults(func=run)


def run(args) -> int:
    from ..params import RNNConfig
    from ..summary import summary

    config = RNNConfig(args.mode.upper(), args.input_size, args.hidden_size, args.num_layers, not args.no_bias,
                       bidirectional=args.bidirectional, proj_size=args.proj_size)
    print(summary(config))
    return 0
