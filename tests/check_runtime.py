#!/usr/bin/env python3
"""Fails when runtime code imports anything outside the standard library.

Walks every module of ``pandad`` and ``schedd_plugin`` with ``ast`` (nothing is
imported or run) and checks each absolute import against ``sys.stdlib_module_names``.
"""

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("pandad", "schedd_plugin")


def imported_top_level_names(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def main() -> int:
    allowed = set(sys.stdlib_module_names) | set(RUNTIME_PACKAGES) | {"__future__"}
    problems = []
    for package in RUNTIME_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for lineno, name in imported_top_level_names(path):
                if name not in allowed:
                    problems.append(f"{path.relative_to(REPO)}:{lineno}: imports {name!r}")
    for problem in problems:
        print(problem)
    print(f"runtime imports: {len(problems)} outside the standard library")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
