"""Size limits on every data value, checked before any parsing.

A value is walked iteratively (never recursively), so no input can raise
RecursionError, OverflowError or ValueError here: a value too long, too deep,
too large or of a type data cannot have is a refusal naming the key. Messages
show a value cut to about 100 characters (``shown``).

Pure: imports no pyinfra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NoReturn

__all__ = ["MAX_DEPTH", "MAX_DIGITS", "MAX_ITEMS", "MAX_STRING", "SHOWN", "check", "shown"]

Fail = Callable[[str, object, str], NoReturn]

MAX_STRING = 2048  # characters in one string (a URL, a path, a requirement)
MAX_DIGITS = 18  # digits of a whole number (ports, sizes, counts are far smaller)
MAX_DEPTH = 6  # nesting of lists/dicts (sage_wheels is 3 deep)
MAX_ITEMS = 500  # strings, numbers, lists and dicts in one key's value
SHOWN = 100  # characters of a value shown in a message

_SCALARS = (str, bool, int, float, type(None))
_LIMIT = 10**MAX_DIGITS


def shown(value: object, limit: int = SHOWN) -> str:
    """repr(value) cut to about ``limit`` characters; never raises."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        # repr of a huge int is slow and may raise ValueError (int max str digits).
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"<a whole number of about {digits} digits>"
    try:
        text = repr(value)
    except (RecursionError, ValueError, MemoryError):
        return f"<a {type(value).__name__} too deeply nested or too large to show>"
    except Exception as exc:  # a foreign object whose __repr__ fails
        return f"<a {type(value).__name__} that cannot be shown: {type(exc).__name__}>"
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def check(key: str, value: object, fail: Fail) -> None:
    """Refuse a value that is too long, too large, too deep, too big or of a type
    that data cannot have; every string, number and dict key of it is checked."""
    stack: list[tuple[str, object, int]] = [(key, value, 0)]
    items = 0
    while stack:
        where, item, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            fail(key, value, f"more than {MAX_ITEMS} items in one value")
        if isinstance(item, str):
            if len(item) > MAX_STRING:
                fail(where, item, f"{len(item)} characters, at most {MAX_STRING}")
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if not -_LIMIT < item < _LIMIT:
                fail(where, item, f"number too large (at most {MAX_DIGITS} digits)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                fail(where, item, "not a finite number")
        elif isinstance(item, list | tuple | Mapping):
            if depth >= MAX_DEPTH:
                fail(key, value, f"nested deeper than {MAX_DEPTH} levels")
            if items + len(stack) + len(item) > MAX_ITEMS:
                fail(key, value, f"more than {MAX_ITEMS} items in one value")
            if isinstance(item, Mapping):
                for sub_key, sub_value in item.items():
                    if not isinstance(sub_key, str):
                        fail(where, sub_key, f"keys must be strings, not {type(sub_key).__name__}")
                    if len(sub_key) > MAX_STRING:
                        fail(
                            where,
                            sub_key,
                            f"key of {len(sub_key)} characters, at most {MAX_STRING}",
                        )
                    stack.append((f"{where}.{sub_key[:40]}", sub_value, depth + 1))
            else:
                for i, sub_value in enumerate(item):
                    stack.append((f"{where}[{i}]", sub_value, depth + 1))
        else:
            fail(where, item, f"a {type(item).__name__} is not a data value")
