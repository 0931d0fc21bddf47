"""Numbers as HTCondor configuration writes them, and the ranges knobs hold them to.

Shared by pandad and panda_plugin.

A knob's number is a literal or simple ClassAd arithmetic (``64 * 1024``), a byte size may
carry a unit (``512K``, ``16 MB``, ``4G``). Parsing never raises anything but ValueError: no
NaN gets through, and a value too large for a double or for Python's integer conversion
becomes one that every range refuses, so no later sleep, wait or allocation can overflow.
"""

import ast
import math
import re
from typing import Tuple, Union

__all__ = ["seconds", "size", "integer", "range_text", "check_range"]

Limits = Tuple[float, float]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+)\s*([a-zA-Z]*)\s*")
_DIGITS = re.compile(r"[-+]?[0-9]+")
_INFINITE = 1 << 1024           # stands for a value beyond any range (and any double)
_ARITHMETIC = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub,
               ast.Mult, ast.Div, ast.Mod, ast.USub, ast.UAdd)


def number(text: str) -> Union[int, float]:
    """An integer or real as HTCondor takes one: a literal or simple ClassAd arithmetic.

    Never NaN; a real too large for a double is infinite, which any range refuses.
    """
    stripped = text.strip()
    try:
        return int(stripped)
    except ValueError:
        if _DIGITS.fullmatch(stripped):    # more digits than Python converts
            raise ValueError("is too large") from None
    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError):
        raise ValueError("is not a number") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ARITHMETIC) or (
                isinstance(node, ast.Constant) and (isinstance(node.value, bool) or
                                                    not isinstance(node.value, (int, float)))):
            raise ValueError("is not a number")
    try:
        value = _arith(tree.body)
    except ZeroDivisionError:
        raise ValueError("divides by zero") from None
    except OverflowError:                   # an integer too large for a real, mixed with one
        raise ValueError("is too large") from None
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("is not a number")
    return value


def _arith(node: ast.AST) -> Union[int, float]:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        value = _arith(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.BinOp)
    left, right = _arith(node.left), _arith(node.right)
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    if isinstance(left, int) and isinstance(right, int):
        # ClassAd integer division and modulus truncate toward zero, as C does.
        quotient = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
        return quotient if isinstance(node.op, ast.Div) else left - quotient * right
    return left / right if isinstance(node.op, ast.Div) else left % right


def integer(text: str) -> int:
    value = number(text)
    if isinstance(value, float):
        if math.isinf(value):
            return _INFINITE if value > 0 else -_INFINITE
        if not value.is_integer():
            raise ValueError("is not an integer")
        value = int(value)
    return value


def size(text: str) -> int:
    """Bytes: an integer, or digits with a unit (powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if match and match.group(2).lower() in _UNITS:
        try:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
        except ValueError:                  # more digits than Python converts
            return _INFINITE
    return integer(text)


def seconds(text: str) -> float:
    value = number(text)
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _shown(kind: str, value: float) -> str:
    """``value`` as an admin would write it: ``4G`` rather than 4294967296 for a size."""
    if kind == "size":
        for unit in ("T", "G", "M", "K"):
            scale = _UNITS[unit.lower()]
            if value >= scale and value % scale == 0:
                return f"{int(value // scale)}{unit}"
    return str(value) if isinstance(value, int) else f"{value:g}"


def range_text(kind: str, limits: Limits) -> str:
    """A documented range, e.g. ``0 to 86400`` or ``1 to 4G``."""
    return f"{_shown(kind, limits[0])} to {_shown(kind, limits[1])}"


def check_range(kind: str, limits: Limits, value: float) -> None:
    """Raise ValueError unless ``value`` is within ``limits`` (both ends included)."""
    low, high = limits
    if value < low:
        reason = "must not be negative" if low == 0 else f"must be at least {_shown(kind, low)}"
    elif value > high:
        reason = f"must be at most {_shown(kind, high)}"
    else:
        return
    raise ValueError(f"{reason} (range {range_text(kind, limits)})")
