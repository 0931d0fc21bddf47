#!/usr/bin/env python3
"""Module and function sizes of the runtime: ``python3 tests/sizes.py [--limit-module N] [--limit-function N]``.

Prints every runtime module with its line count and every function or method longer than the
function limit, largest first, then a one-line summary. Exits 1 when a module is over its limit, so
the rule "runtime modules under ~500 lines" can be checked by anyone with the project's own files.
Functions over the limit are listed but do not fail the run: a long function is judged by whether
its size hides several concerns, which a count cannot tell.
"""

import argparse
import ast
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

REPO = Path(__file__).resolve().parent.parent
RUNTIME = ("pandad", "schedd_plugin")
DEV_PACKAGE = Path("pandad") / "dev"     # development tools: counted apart from the runtime


def python_files() -> List[Path]:
    return sorted(p for top in RUNTIME for p in (REPO / top).rglob("*.py"))


def functions(tree: ast.AST, prefix: str = "") -> Iterator[Tuple[str, int]]:
    """(qualified name, lines) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = prefix + node.name
            yield name, node.end_lineno - node.lineno + 1
            yield from functions(node, name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, prefix + node.name + ".")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-module", type=int, default=500)
    parser.add_argument("--limit-function", type=int, default=60)
    args = parser.parse_args(argv)
    modules, long_functions = [], []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        modules.append((len(text.splitlines()), rel))
        for name, lines in functions(ast.parse(text, str(rel))):
            if lines > args.limit_function:
                long_functions.append((lines, f"{rel}:{name}"))
    runtime = [(n, rel) for n, rel in modules if DEV_PACKAGE not in rel.parents]
    over = [(n, rel) for n, rel in runtime if n > args.limit_module]
    print("lines  module")
    for n, rel in sorted(modules, reverse=True):
        mark = "  (dev)" if DEV_PACKAGE in rel.parents else ("  OVER" if n > args.limit_module else "")
        print(f"{n:5d}  {rel}{mark}")
    print(f"\nfunctions over {args.limit_function} lines:")
    for n, where in sorted(long_functions, reverse=True):
        print(f"{n:5d}  {where}")
    print(f"\nruntime: {sum(n for n, _ in runtime)} lines in {len(runtime)} modules; "
          f"dev tools: {sum(n for n, _ in modules) - sum(n for n, _ in runtime)} lines; "
          f"{len(over)} runtime module(s) over {args.limit_module}; "
          f"{len(long_functions)} function(s) over {args.limit_function}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
