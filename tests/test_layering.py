"""The wings keep the data path one way: sources/mooring -> learning -> run -> service.

Every ``import`` in the package (also inside functions) is read from the source with
``ast``; a wing may import only the wings below it, and no wing imports the top-level
shells (``cli``, ``demo``, ``report``). The twin's generator imports only itself, so
the model can never read its formulas; its skill ceiling may score with learning.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

import cascadia

PACKAGE = Path(cascadia.__file__).resolve().parent

#: What each wing may import besides itself (and the package version).
ALLOWED: dict[str, set[str]] = {
    "sources": set(),
    "mooring": set(),
    "learning": {"sources", "mooring"},
    "run": {"learning", "sources", "mooring"},
    "service": {"run", "learning", "sources", "mooring"},
    "twin": set(),
    # the report package is a top-level shell split by concern: it reads the store and the
    # model directory, never the twin's generator
    "report": {"run", "learning", "sources", "mooring"},
}
#: Modules with wider rights than their wing, and why.
EXCEPTIONS: dict[str, set[str]] = {
    # how good any model could be: scores oracles with the project's own metrics and events
    "twin/ceiling.py": {"learning", "mooring"},
}
TOP_LEVEL = {"cli", "demo", "report"}


def _imported_modules(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every absolute import of ``cascadia`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or ""), []))
    return [item for item in found if item[1].split(".")[0] in {"cascadia", ""}]


def layering_violations(package: Path) -> list[str]:
    """Every import that goes up or sideways between wings, as ``file:line: reason``."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if len(relative.parts) == 1:
            continue  # the top-level shells may import everything
        wing = relative.parts[0]
        allowed = ALLOWED.get(wing)
        if allowed is None:
            problems.append(f"{relative}: wing {wing!r} has no layering rule")
            continue
        allowed = {wing} | allowed | EXCEPTIONS.get(relative.as_posix(), set())
        for line, module, names in _imported_modules(path):
            where = f"{relative}:{line}"
            parts = module.split(".")
            if module.startswith("."):
                problems.append(f"{where}: relative import {module!r}; write it absolute")
            elif parts == ["cascadia"]:
                if set(names) - {"__version__"}:
                    problems.append(f"{where}: imports {names} from the package root")
            elif parts[1] in TOP_LEVEL and parts[1] != wing:
                problems.append(f"{where}: imports the top-level shell {module!r}")
            elif parts[1] not in allowed:
                problems.append(f"{where}: {wing}/ may not import {module!r}")
    return problems


def test_the_package_keeps_its_layering() -> None:
    assert layering_violations(PACKAGE) == []


def test_every_wing_says_what_it_may_import() -> None:
    wings = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(wings) <= set(ALLOWED), wings
    for wing in wings:
        doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"{wing}/__init__.py does not state its imports"


@pytest.mark.parametrize(
    ("module", "line", "reason"),
    [
        ("sources/cache.py", "from cascadia.learning.features import FeatureSpec", "sources/"),
        ("mooring/events.py", "import cascadia.run.store", "mooring/"),
        ("learning/training.py", "from cascadia.run.store import open_store", "learning/"),
        ("run/pipeline.py", "from cascadia.cli import main", "top-level shell"),
        ("twin/ocean.py", "from cascadia.learning import shelf", "twin/"),
    ],
)
def test_a_forbidden_import_is_caught(tmp_path, module, line, reason) -> None:
    copy = tmp_path / "cascadia"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    # inside a function too: lazy imports are imports
    target.write_text(target.read_text() + f"\n\ndef _sneaky():\n    {line}\n")
    (problem,) = layering_violations(copy)
    assert problem.startswith(module) and reason in problem, problem
