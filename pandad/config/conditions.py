"""``if``/``elif``/``else``/``endif``: conditions evaluated as HTCondor's ConfigIfStack does."""

import re
from typing import List, Tuple

from pandad.config.macros import Context
from pandad.config.syntax import IDCHARS, SPACE, ConfigError, parse_bool, rstrip_space

# 'if version' is compared against the HTCondor releases pandad supports; a comparison
# whose answer differs across that range cannot be decided and is an error.
SUPPORTED_HTCONDOR_VERSIONS = ((23, 0, 0), (25, 99, 99))

# --------------------------------------------------------------------------- if/else

_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_VERSION = re.compile(r"version\s*(!?)([<=>]?)(=?)\s*[vV]?(\d+)\.(\d+)(?:\.(\d+))?\s*",
                      re.IGNORECASE)


def _version_test(match: "re.Match[str]", version: Tuple[int, int, int]) -> bool:
    negated, op_char, or_equal = match.group(1), match.group(2), match.group(3)
    literal = (int(match.group(4)), int(match.group(5)),
               int(match.group(6)) if match.group(6) is not None else version[2])
    op = {"<": -1, "=": 0, ">": 1, "": 0}[op_char]
    diff = (version > literal) - (version < literal)
    result = diff == op or (bool(or_equal) and diff == 0)
    return not result if negated else result


def evaluate_if(expression: str, ctx: Context) -> bool:
    """The value of an ``if``/``elif`` condition; raises ConfigError when it has none."""
    expr = expression
    expanded = "$" in expr
    if expanded:
        expr = rstrip_space(ctx.expand(expr))
    expr = expr.lstrip(SPACE)
    inverted = expr.startswith("!")
    if inverted:
        expr = expr[1:].lstrip(SPACE)
    expr = rstrip_space(expr)
    if expanded and not expr:
        return inverted
    return _evaluate_condition(expr, expression, ctx) != inverted


def _evaluate_condition(expr: str, original: str, ctx: Context) -> bool:
    if _NUMBER.fullmatch(expr):
        return float(expr) != 0
    as_bool = parse_bool(expr)
    if as_bool is not None:
        return as_bool
    words = expr.split(None, 1)
    keyword = words[0].lower() if words else ""
    if keyword == "defined":
        argument = words[1].strip(SPACE) if len(words) > 1 else ""
        if not argument:
            return False
        if argument.lower().startswith("use "):
            raise ConfigError(f"'if defined use ...' needs metaknobs, which pandad does not "
                              f"support: {original}")
        if _NUMBER.fullmatch(argument) or argument.lower() in ("true", "false"):
            return True
        if all(c in IDCHARS for c in argument):
            value = ctx.lookup(argument)
            if value is None and parse_bool(argument) is not None:
                return True
            return bool(value)
        raise ConfigError(f"{original} is not a valid if condition because defined argument "
                          "must be param name, boolean, or number")
    if keyword.startswith("version"):
        match = _VERSION.fullmatch(expr)
        if not match or int(match.group(4)) < 6:
            raise ConfigError(f"{original} is not a valid if condition because the version "
                              "literal is invalid")
        low, high = (_version_test(match, v) for v in SUPPORTED_HTCONDOR_VERSIONS)
        if low != high:
            raise ConfigError(f"cannot decide 'if {original}': pandad assumes an HTCondor "
                              "release from 23.0 to 25.x and the answer differs across them")
        return low
    raise ConfigError(f"{original} is not a valid if condition because complex "
                      "conditionals are not supported")


class IfStack:
    """if/elif/else/endif nesting, as HTCondor's ConfigIfStack."""

    def __init__(self) -> None:
        self.frames: List[List[bool]] = []   # [active, any_branch_taken, in_else]

    def enabled(self) -> bool:
        return all(frame[0] for frame in self.frames)

    def handle(self, line: str, ctx: Context) -> bool:
        """True if ``line`` was an if/elif/else/endif (and applies it)."""
        word = line.split(None, 1)[0].lower() if line.strip(SPACE) else ""
        if word not in ("if", "elif", "else", "endif"):
            return False
        rest = line[len(word):].strip(SPACE)
        outer = self.enabled()
        if word == "if":
            value = evaluate_if(rest, ctx) if outer else False
            self.frames.append([value, value, False])
        elif word == "elif":
            if not self.frames or self.frames[-1][2]:
                raise ConfigError("elif is not allowed after else" if self.frames
                                  else "elif without matching if")
            frame = self.frames[-1]
            live = all(f[0] for f in self.frames[:-1])
            value = (not frame[1]) and live and evaluate_if(rest, ctx)
            frame[0] = value
            frame[1] = frame[1] or value
        elif word == "else":
            if not self.frames or self.frames[-1][2]:
                raise ConfigError("else is not allowed after else" if self.frames
                                  else "else without matching if")
            frame = self.frames[-1]
            frame[0] = not frame[1]
            frame[2] = True
        else:
            if not self.frames:
                raise ConfigError("endif without matching if")
            self.frames.pop()
        return True
