"""One door for optional dependencies, so a missing one says which extra to install."""
import importlib


def require(module: str, extra: str):
    """Import ``module`` or raise ImportError naming ``pip install 'lstmkit[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is needed here: pip install 'lstmkit[{extra}]'") from e
