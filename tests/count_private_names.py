"""Count the tests that touch private names of fastspecnorm (a report, not a test).

    .venv/bin/python tests/count_private_names.py [-v]

A test function touches a private name when its body, or a helper function of its module that it
calls, does one of:
- uses a name imported with a leading underscore from a `fastspecnorm` module
  (`from fastspecnorm.audio.cache import _to_storage`); the public functions of a private module,
  tested in that module's own test file (`fastspecnorm._io` in test_io.py), are not counted;
- reads or writes an underscore attribute (`cache._entries`, `clone._mm`) of something that is
  not a test-local class or a library outside the package (`self._x`, `fdist.DistributedDL._broadcast`
  are not counted);
- monkeypatches a module-level name of a `fastspecnorm` module (`monkeypatch.setattr(callback_module,
  "collect_stats", ...)`), which a refactor may stop looking up, so that the test passes vacuously.
Helpers and fixtures count where they are defined: in the test's module, or in conftest.py (a fixture
such as `fake_training` counts for every test that takes it).
Prints the number of such tests (parametrized cases count once) and, with -v, each test and why.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NOT_PACKAGE = {"self", "cls", "sys", "os", "np", "torch", "fdist", "dist", "pd", "plt", "sf", "mp"}


def package_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    "Names bound to fastspecnorm modules, and private names imported from them."
    modules, private = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fastspecnorm"):
                    modules.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastspecnorm"):
            for a in node.names:
                name = a.asname or a.name
                if a.name.startswith("_"):
                    private.add(name)
                elif a.name[:1].islower() and a.name not in ("functional",) and not callable_like(a.name):
                    modules.add(name)
                elif a.name == "functional":
                    modules.add(name)
    return modules, private


def callable_like(name: str) -> bool:
    "Lower-case names imported from the package that are functions, not modules (heuristic: has a verb-ish underscore)."
    return "_" in name


def reasons(fn: ast.AST, modules: set[str], private: set[str]) -> list[str]:
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and node.id in private:
            found.append(f"imports {node.id}")
        elif (
            isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("_")
        ):  # not __dunder__ / _repr_html_
            base = node.value
            root = base
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in NOT_PACKAGE:
                continue
            found.append(f"reads .{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setattr":
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id == "monkeypatch" and node.args:
                target = node.args[0]
                root = target
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(target, ast.Constant) and str(target.value).startswith("fastspecnorm"):
                    found.append(f"monkeypatches {target.value}")
                elif isinstance(root, ast.Name) and root.id in modules:
                    found.append(f"monkeypatches {ast.unparse(target)}.{ast.unparse(node.args[1]) if len(node.args) > 1 else ''}")
    return found


def helper_reasons_of(path: Path) -> dict[str, list[str]]:
    "What each module-level helper or fixture of `path` touches."
    tree = ast.parse(path.read_text())
    modules, private = package_aliases(tree)
    helpers = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("test")}
    return {name: reasons(fn, modules, private) for name, fn in helpers.items()}


def scan(path: Path, shared: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    "`shared`: the helpers and fixtures of conftest.py, which every test module sees unless it defines the name."
    tree = ast.parse(path.read_text())
    modules, private = package_aliases(tree)
    helper_reasons = {**(shared or {}), **helper_reasons_of(path)}
    out = {}
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
    for fn in tests:
        why = reasons(fn, modules, private)
        called = {n.func.id for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        args = {a.arg for a in fn.args.args}  # fixtures defined as helpers in the module
        for name in (called | args) & set(helper_reasons):
            why += [f"{r} (via {name})" for r in helper_reasons[name]]
        if why:
            out[f"{path.name}::{fn.name}"] = sorted(set(why))
    return out


def main(argv: list[str]) -> int:
    found = {}
    shared = helper_reasons_of(TESTS / "conftest.py")
    for path in sorted(TESTS.glob("test_*.py")):
        found.update(scan(path, shared))
    if "-v" in argv:
        for test, why in found.items():
            print(f"{test}: {'; '.join(why)}")
    print(f"{len(found)} tests touch private names of fastspecnorm")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
