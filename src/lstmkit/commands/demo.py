"""``lstmkit demo``: train a small LSTM in NumPy on a periodic series; print summary and loss."""


from ._flags import non_negative_int, positive_int


def register(sub) -> None:
    d = sub.add_parser("demo", help="train a small LSTM in NumPy on a periodic series; print summary and loss")
    d.add_argument("--epochs", type=positive_int, default=15)
    d.add_argument("--hidden-size", type=positive_int, default=32)
    d.add_argument("--seed", type=non_negative_int, default=0)
    d.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run as train

    train(epochs=args.epochs, hidden=args.hidden_size, seed=args.seed)
    return 0
