"""One conversion of settings to their declared types, for values from YAML/JSON files, the command line and HTTP
requests alike (``"1e-3"`` is a float, ``"true"`` a bool, ``"384,384,1"`` a list of ints)."""
from __future__ import annotations

from typing import Any

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def to_type(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool, int, float or str); ValueError when it is not one (a bool is no number, 2.5 no
    int, a number no bool)."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
            return value.strip().lower() in TRUE
        raise ValueError(value)
    if isinstance(value, bool):
        raise ValueError(value)
    if kind is str:
        if isinstance(value, (str, int, float)):
            return str(value)   # e.g. a split named 2019
        raise ValueError(value)
    if kind is int:
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) or number != int(number):
            raise ValueError(value)
        return int(number)
    if kind is float and isinstance(value, (str, int, float)):
        return float(value)
    raise ValueError(value)


def to_list(value: Any, kind: type) -> list:
    """A list of ``kind`` from a list, a single value, or a comma-separated string (numbers: spaces too)."""
    if isinstance(value, str):
        value = [v for v in (value.split(",") if kind is str else value.replace(",", " ").split()) if v]
    return [to_type(v, kind) for v in (value if isinstance(value, (list, tuple)) else [value])]
