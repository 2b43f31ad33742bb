"""The test tree is laid out one way: every folder a package, shared helpers only in
`tests/support/`, imported as `tests.support.<module>`, and no test imports another test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _python_files() -> list[Path]:
    return [p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts]


def test_every_test_folder_is_a_package() -> None:
    folders = {p.parent for p in _python_files()}
    assert (
        sorted(str(f.relative_to(TESTS)) for f in folders if not (f / "__init__.py").exists()) == []
    )


def test_helpers_come_from_tests_support_only() -> None:
    wrong = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            if node.level:  # relative imports hide where a helper lives
                wrong.append(f"{path.relative_to(TESTS)}: from {'.' * node.level}{module}")
            elif (module.startswith("tests") and not module.startswith("tests.support")) or (
                module != "__future__" and module.startswith(("_", "test_", "conftest"))
            ):
                wrong.append(f"{path.relative_to(TESTS)}: from {module}")
    assert wrong == []


def test_support_modules_are_not_tests() -> None:
    support = TESTS / "support"
    assert not [p.name for p in support.glob("test_*.py")]
    for path in support.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert not [n for n in names if n.startswith("test_")], path.name
