"""JSON text for everything the project writes (CLI output, exports, bench files): one function.

Python's ``json.dumps`` writes a NaN score as ``NaN`` and an infinite one as ``Infinity``, which are
not JSON: strict parsers (browsers' ``JSON.parse``, jq, most languages' libraries) reject the whole
document. ``to_json`` writes them as ``null`` instead, through orjson, whose documented behaviour
this is ("NaN, Infinity, and -Infinity are serialized as null").

Example:
    >>> to_json({"generality": float("nan"), "reliability": 1.0})
    '{"generality":null,"reliability":1.0}'
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _fallback(obj: Any) -> Any:
    """What orjson cannot write by itself: paths as text, tensors and arrays as lists, sets as lists.

    Anything else is written as ``str(obj)`` (as ``json.dumps(..., default=str)`` did).
    """
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if hasattr(obj, "tolist"):  # a torch tensor, or a numpy scalar orjson does not know
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def to_json(obj: Any, indent: bool = False) -> str:
    """``obj`` as JSON text; NaN, Infinity and -Infinity become ``null``.

    Dicts (non-string keys are written as strings), lists, tuples, dataclasses, numpy arrays and
    scalars are written as JSON; paths, tensors and anything else as in ``_fallback``. ``indent``
    indents by two spaces. Non-ASCII text is written as UTF-8, not escaped.

    Raises:
        TypeError: an integer outside the 64-bit range or a string that is not valid Unicode
            (orjson's JSONEncodeError is a TypeError).
    """
    option = _OPTIONS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(obj, default=_fallback, option=option).decode("utf-8")
