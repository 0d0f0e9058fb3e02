"""Lazy re-exports (PEP 562): names are imported on first use, so importing a package stays cheap."""
from importlib import import_module
from typing import Callable, Dict, Tuple


def lazy_exports(package: str, exports: Dict[str, str], namespace: dict) -> Tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for a package re-exporting ``{name: relative module}``."""

    def __getattr__(name):
        if name in exports:
            value = getattr(import_module(exports[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
