"""``lstmkit convert IN OUT``: move an LSTM/GRU between .pt/.pth, .safetensors, .keras and .onnx files."""

import sys

from ._flags import refuse_unused

FORMATS = ["safetensors", "torch", "keras", "onnx"]


def register(sub) -> None:
    c = sub.add_parser("convert", help="convert an LSTM/GRU between .pt/.pth, .safetensors, .keras and .onnx",
                       description="Formats come from the extensions (.pt/.pth, .safetensors, .keras, .onnx); "
                                   "the architecture from the weights where they say it, else from the flags.")
    c.add_argument("input", help="file to read")
    c.add_argument("output", help="file to write (refused if it exists, unless --overwrite)")
    c.add_argument("--format", choices=FORMATS, help="format of OUTPUT, overriding its extension")
    c.add_argument("--input-format", choices=FORMATS, help="format of INPUT, overriding its extension")
    c.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    c.add_argument("--mode", choices=["lstm", "gru", "LSTM", "GRU"],
                   help="LSTM or GRU, for a .pt state_dict whose shapes do not say")
    c.add_argument("--prefix", help="key prefix of the RNN in a bigger model's .pt state_dict (e.g. 'encoder.rnn.')")
    c.add_argument("--batch-first", action="store_true", help="the model takes (batch, time, features) inputs")
    c.add_argument("--streaming", action="store_true", help="ONNX: a one-step model with state in and out")
    c.add_argument("--lengths", action="store_true", help="ONNX: add a 'lengths' (B,) int64 input")
    c.add_argument("--initial-state", action="store_true", help="ONNX: add h0/c0 inputs")
    c.set_defaults(func=run)


def run(args) -> int:
    from ..io.convert import check_writable_early, convert, format_of
    from ..io.files import check_not_source
    from ..io.model import describe

    src_fmt = format_of(args.input, args.input_format)
    dst_fmt = format_of(args.output, args.format)
    if src_fmt != "torch":
        refuse_unused(args, {"mode": None, "prefix": None}, f"only for a torch (.pt/.pth) INPUT, this one is {src_fmt}")
    if dst_fmt != "onnx":
        refuse_unused(args, {"streaming": False, "lengths": False, "initial_state": False},
                      f"only for an ONNX OUTPUT, this one is {dst_fmt}")
    check_not_source(args.output, args.input, "output")
    check_writable_early(args.output, args.overwrite)
    read_options = {}
    if src_fmt == "torch":
        read_options = {"mode": args.mode, "batch_first": args.batch_first, "prefix": args.prefix}
    elif args.batch_first:
        read_options = {"batch_first": True}
    write_options = {}
    if dst_fmt == "onnx":
        write_options = {"streaming": args.streaming, "lengths": args.lengths, "initial_state": args.initial_state}
    layer = convert(args.input, args.output, src_format=src_fmt, dst_format=dst_fmt,
                            overwrite=args.overwrite, read_options=read_options, write_options=write_options)
    print(f"wrote {args.output} ({dst_fmt}{', streaming' if write_options.get('streaming') else ''}): "
          f"{describe(layer)}")
    lost = unrecorded(layer.config, dst_fmt)
    if lost:
        print(f"note: {args.output} does not record {lost}; give it to the model you load the file into",
              file=sys.stderr)
    return 0


def unrecorded(config, fmt: str) -> str:
    """The options of ``config`` that a file of format ``fmt`` has no place for ("" when none): a torch state_dict
    holds tensors only (batch_first and the inter-layer dropout are the module's arguments); a Keras model is
    batch-first, and Keras' own dropout= drops a layer's input, not the output between layers."""
    lost = []
    if fmt == "torch" and config.batch_first:
        lost.append("batch_first=True")
    if fmt == "keras" and not config.batch_first:
        lost.append("batch_first=False (Keras models take (batch, time, features))")
    if fmt in ("torch", "keras") and config.dropout and config.num_layers > 1:
        lost.append(f"dropout={config.dropout:g} between layers")
    return " or ".join(lost)
