"""Flag habits the task commands share: numbers checked by argparse (a plain error, never a pandas traceback),
help that shows each default, and --json / --quiet output."""
import argparse
import sys


class DefaultsHelp(argparse.HelpFormatter):
    """Appends "(default: X)" to a flag's help unless the help already says its default or there is none to
    show (None, False, a flag that is off unless given)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text.lower() or d is None or d is False or d is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _number(kind, low, low_ok: bool, what: str):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")) or v < low or (v == low and not low_ok):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return v
    parse.__name__ = what  # argparse names the type in its own messages
    return parse


positive_int = _number(int, 1, True, "a positive integer")
non_negative_int = _number(int, 0, True, "an integer >= 0")
non_negative = _number(float, 0.0, True, "a number >= 0")
finite = _number(float, float("-inf"), True, "a finite number")
positive = _number(float, 0.0, False, "a number > 0")


def dropout_rate(text: str) -> float:
    """A dropout probability: a number in [0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return v


def fraction(text: str) -> float:
    """A number in (0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return v


def refuse_unused(args, flags: dict, why: str) -> None:
    """ValueError naming the first of ``flags`` ({dest: default}) given a value other than its default: ``why``
    this run does not read it, and it would otherwise be ignored without a word."""
    for dest, default in flags.items():
        value = getattr(args, dest)
        if value != default:
            raise ValueError(f"--{dest.replace('_', '-')}: {why}, got {value!r}")


def add_output(p) -> None:
    """--json (the result summary as JSON on stdout, the log on stderr) and --quiet (no log, no bar)."""
    p.add_argument("--json", action="store_true", help="print the result summary as JSON on stdout (the log goes "
                                                       "to stderr)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors (and --json's summary); no "
                                                        "progress bar")


def log_for(args):
    """Where a task's log lines go: stdout, stderr under --json, nowhere under --quiet."""
    if args.quiet:
        return lambda *a, **k: None
    if args.json:
        return lambda *a, **k: print(*a, **k, file=sys.stderr)
    return print


def show_progress(args) -> bool:
    return not (args.no_progress or args.quiet)


def emit(args, summary: dict) -> None:
    """Under --json, the summary on stdout (NaN/inf as null, as in results.json)."""
    if args.json:
        import json

        from ..tasks.runio import _clean

        print(json.dumps(_clean(summary), indent=2))
