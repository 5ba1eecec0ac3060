"""One module per ``lstmkit`` subcommand; each has ``register(subparsers)`` and calls into the library."""
