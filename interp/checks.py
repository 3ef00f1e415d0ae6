"""Small checks that name the field, the value and what is expected (Settings, Export, FrameEdit)."""
from __future__ import annotations

import math
from typing import Any

from interp import limits


def check(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name}={short(value)} is not allowed: expected {expected}")


def short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters (a message never echoes a huge input)."""
    return cut(repr(value), limit)


def cut(text: str, limit: int = 80) -> str:
    """`text`, cut to `limit` characters with "..." when longer."""
    return text if len(text) <= limit else text[:limit] + "..."


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def real(name: str, value: Any) -> None:
    """A number (int or float, not bool or text) that is finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} is not allowed: expected a number"
                         + (" (write it without quotes)" if isinstance(value, str) else ""))
    check(math.isfinite(value), name, value, "a finite number")


def whole(name: str, value: Any, low: int, bound: int, limit: str, note: str = "") -> None:
    """A whole number from low to bound; past the bound the message names its variable."""
    expected = f"a whole number from {low} to {bound}{note}"
    check(is_int(value) and value >= low, name, value, expected)
    if value > bound:
        raise ValueError(f"{name}={value!r} is not allowed: expected {expected}; {bound} is "
                         f"this server's limit, set by {limits.env_name(limit)}")


def string(name: str, value: Any, lim: "limits.Limits", optional: bool = False) -> None:
    if optional and value is None:
        return
    check(isinstance(value, str), name, value, "a string" + (" or null" if optional else ""))
    if len(value) > lim.prompt_chars:
        raise ValueError(f"{name} is {len(value)} characters long, over this server's limit of "
                         f"{lim.prompt_chars} (set by {limits.env_name('prompt_chars')}): "
                         f"shorten it (CLIP reads only the first 77 tokens)")
