"""The layers of the code and the one direction of their imports (docs/architecture.md, "Layers").

shared ← daemon, shared ← plug-in, everything ← dev:

- a shared module imports only the standard library and other shared modules;
- a daemon module (``pandad.*``, neither shared nor dev) imports no ``schedd_plugin`` and no
  ``pandad.dev``;
- a plug-in module (``schedd_plugin.*``) imports only the standard library, shared modules and
  ``schedd_plugin``;
- nothing outside ``pandad.dev`` imports ``pandad.dev``, except ``pandad.cli``'s lazy dispatch to
  the dev commands (``ALLOWED_EDGES``).

Every module is read with ``ast``; nothing is imported. A string constant naming a
``pandad.dev`` module counts as an import of it, so a lazy ``__import__`` by name is seen too.
"""

import ast
import functools
import sys
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
MARK = "Shared by pandad and panda_plugin."

# A package listed here is shared with all its submodules.
SHARED = frozenset({"pandad", "pandad.wire", "pandad.classad", "pandad.config", "pandad.knobs",
                    "pandad.knobvalues", "pandad.logsetup", "pandad.process", "pandad.stats"})
DEV = "pandad.dev"
ALLOWED_EDGES = frozenset({("pandad.cli", "pandad.dev.demo"),
                           ("pandad.cli", "pandad.dev.devmonitor")})
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


def module_files() -> Dict[str, Path]:
    """Every module of both packages by dotted name (a package by its own name)."""
    found = {}
    for top in ("pandad", "schedd_plugin"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer(name: str) -> str:
    if within(name, DEV):
        return "dev"
    if name in SHARED or any(within(name, s) for s in SHARED if s != "pandad"):
        return "shared"
    if within(name, "pandad"):
        return "daemon"
    if within(name, "schedd_plugin"):
        return "plugin"
    return "stdlib" if name.split(".")[0] in STDLIB else "other"


def imports(name: str, path: Path) -> Iterator[Tuple[int, str]]:
    """(line, module) of every import in a module, resolved to the most specific module known."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield node.lineno, full if full in MODULES else base
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value in MODULES and within(node.value, DEV)):
            yield node.lineno, node.value


ALLOWED_LAYERS = {
    "shared": {"stdlib", "shared"},
    "daemon": {"stdlib", "shared", "daemon"},
    "plugin": {"stdlib", "shared", "plugin"},
    "dev": {"stdlib", "shared", "daemon", "plugin", "dev"},
}


@functools.lru_cache(maxsize=None)
def edges() -> FrozenSet[Tuple[str, str, int]]:
    return frozenset((name, target, line) for name, path in MODULES.items()
                     for line, target in imports(name, path))


def test_the_layers_cover_every_module() -> None:
    assert {layer(name) for name in MODULES} == {"shared", "daemon", "plugin", "dev"}
    assert all(name in MODULES for name in SHARED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_and_those_below(name: str) -> None:
    own = layer(name)
    wrong = [f"{MODULES[name].relative_to(REPO)}:{line}: {own} module imports {target} "
             f"({layer(target)})"
             for source, target, line in sorted(edges()) if source == name
             and layer(target) not in ALLOWED_LAYERS[own]
             and (source, target) not in ALLOWED_EDGES]
    assert not wrong, "\n".join(wrong)


def test_the_cli_dispatch_is_the_one_edge_into_the_dev_tools() -> None:
    into_dev = {(source, target) for source, target, _ in edges()
                if within(target, DEV) and not within(source, DEV)}
    assert into_dev == ALLOWED_EDGES


def test_shared_modules_and_only_they_say_so() -> None:
    marked = {name for name, path in MODULES.items()
              if MARK in (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "")}
    assert marked == SHARED


def test_the_plugin_uses_the_shared_modules() -> None:
    """The shared list is not wider than what the plug-in needs, directly or through another."""
    needed, todo = set(), [name for name in MODULES if layer(name) == "plugin"]
    while todo:
        source = todo.pop()
        for src, target, _ in edges():
            if src == source and layer(target) == "shared" and target not in needed:
                needed.add(target)
                todo.append(target)
    covered = {next(s for s in SHARED if within(name, s) and (s != "pandad" or name == s))
               for name in needed}
    assert covered | {"pandad"} == SHARED
