"""The public names' docstrings: one style (Google, as the API reference renders them) and examples that run.

Read statically (`ast`), as mkdocstrings reads them; the examples are run with `doctest`."""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fastspecnorm"
SECTION = re.compile(r"^(\s*)(Args|Arguments|Returns|Yields|Raises|Examples|Attributes|Notes|Warns):\s*$")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _public_names(tree: ast.Module) -> list[str]:
    "The string constants of `__all__` and of its `+=` additions (re-exported `*other.__all__` are checked where defined)."
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AugAssign) else []
        if any(getattr(t, "id", None) == "__all__" for t in targets):
            names += [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return names


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = fn.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    names = [n for n in names if n not in ("self", "cls")]
    if args.vararg is not None:
        names.append(args.vararg.arg)
    if args.kwarg is not None:
        names.append(args.kwarg.arg)
    return names


def _documented(doc: str, section: str) -> set[str]:
    "The names listed in a Google-style section (`name: ...` or `name (type): ...` one indent in)."
    names: set[str] = set()
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        m = SECTION.match(line)
        if m is None or m.group(2) != section:
            continue
        indent = None
        for entry in lines[i + 1 :]:
            if entry.strip() and len(entry) - len(entry.lstrip()) <= len(m.group(1)):
                break  # the section ended
            found = re.match(r"^(\s+)\**([A-Za-z_]\w*)\s*(\([^)]*\))?:", entry)
            if found and (indent is None or len(found.group(1)) == indent):
                indent = len(found.group(1))
                names.add(found.group(2))
    return names


def _public_callables():
    "(module path, qualified name, parameters, docstring) of each public function, class and public method."
    for path in _modules():
        tree = ast.parse(path.read_text())
        public = set(_public_names(tree))
        for node in tree.body:
            if getattr(node, "name", None) not in public:
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node.name, _parameters(node), ast.get_docstring(node) or ""
            elif isinstance(node, ast.ClassDef):
                doc = ast.get_docstring(node) or ""
                for item in node.body:
                    if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        continue
                    if item.name == "__init__":  # documented in the class docstring, as mkdocstrings merges them
                        yield path, node.name, _parameters(item), (ast.get_docstring(item) or "") + "\n" + doc
                    elif not item.name.startswith("_") and ast.get_docstring(item) and _parameters(item):
                        yield path, f"{node.name}.{item.name}", _parameters(item), ast.get_docstring(item)


CALLABLES = list(_public_callables())


def test_public_names_are_found():
    names = {name for _, name, _, _ in CALLABLES}
    assert {"StatsRecorder", "StatsCallback", "SpecNormalize", "AudioDataLoaders.from_df", "compare"} <= names


@pytest.mark.parametrize(
    "path, name, params, doc", [c for c in CALLABLES if c[2]], ids=lambda v: v if isinstance(v, str) else None
)
def test_parameters_are_documented_in_an_args_section(path, name, params, doc):
    assert doc.strip(), f"{path.name}: {name} has no docstring"
    missing = [p for p in params if p not in _documented(doc, "Args")]
    assert not missing, f"{path.name}: {name} does not document {missing} in a Google-style `Args:` section"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_examples_sit_in_an_examples_section(path):
    "A `>>>` line anywhere but under `Examples:` is the old style (mkdocstrings would render it as prose)."
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        doc = ast.get_docstring(node) or ""
        section = None
        for line in doc.splitlines():
            m = SECTION.match(line)
            if m:
                section = m.group(2)
            elif line.strip() and not line.startswith((" ", "\t")):
                section = None  # back at the docstring's own indentation: prose again
            if line.lstrip().startswith(">>>"):
                assert section == "Examples", f"{path.name}: {getattr(node, 'name', 'module')} has `>>>` outside `Examples:`"


@pytest.mark.parametrize("path", [p for p in _modules() if ">>>" in p.read_text()], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_docstring_examples_run(path):
    module = importlib.import_module(_module_name(path))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_no_stale_module_names_in_docstrings():
    stale = ("fastspecnorm.synthetic", "fastspecnorm.cache", "fastspecnorm.core", "ANCHORS.md")
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(node) or ""
                named = [s for s in stale if re.search(re.escape(s) + r"\b", doc)]
                assert not named, f"{path.name}: {getattr(node, 'name', 'module')} names {named}"
