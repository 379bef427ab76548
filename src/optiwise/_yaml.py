"""A small YAML writer for plain data (dicts, lists, tuples, str, int, float, bool, None).

Block style for mappings and for lists that hold mappings or lists, flow style for lists of
scalars; every string is double-quoted (a JSON string is a valid YAML scalar), floats always
carry a dot or ``.inf``/``.nan`` so that YAML 1.1 and 1.2 readers both read them as floats.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dump"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _float(x: float) -> str:
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    text = repr(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        sign = "" if exponent.startswith(("-", "+")) else "+"
        return f"{mantissa}e{sign}{exponent}"
    return text


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} as YAML: {value!r}")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"YAML mapping keys must be strings, got {key!r}")
    if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key, ensure_ascii=False)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        out: list[str] = []
        for k, v in value.items():
            if _is_scalar(v) or (isinstance(v, (list, tuple)) and all(map(_is_scalar, v))):
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
            elif isinstance(v, Mapping) and not v:
                out.append(f"{pad}{_key(k)}: {{}}")
            else:
                out.append(f"{pad}{_key(k)}:")
                out.extend(_lines(v, indent + 2))
        return out
    if isinstance(value, (list, tuple)):
        if all(map(_is_scalar, value)):
            return [pad + _inline(value)]
        out = []
        for item in value:
            sub = _lines(item, indent + 2)
            out.append(f"{pad}- {sub[0].lstrip()}")
            out.extend(sub[1:])
        return out
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return _scalar(value)


def dump(data: Mapping[str, Any]) -> str:
    """``data`` as a YAML document (ends with a newline)."""
    return "\n".join(_lines(data, 0)) + "\n"
