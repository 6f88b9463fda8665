"""No module imports a test module or a conftest.py: what several test modules share lives in tests/support
(or, for one folder's tests, a named helper module beside them), fixtures in a conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(tree: ast.AST) -> list[str]:
    """Dotted names of the ``test_*`` and ``conftest`` modules under ``tests`` that ``tree`` imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return [n for n in found if n.startswith("tests.") and n.rsplit(".", 1)[1].startswith(("test_", "conftest"))]


def test_no_module_imports_a_test_module_or_a_conftest() -> None:
    offenders = {str(p.relative_to(TESTS)): names for p in sorted(TESTS.rglob("*.py"))
                 if (names := imported_test_modules(ast.parse(p.read_text())))}
    assert not offenders, offenders


def test_the_check_sees_both_import_forms() -> None:
    tree = ast.parse("from tests.schemas.test_event import MINIMAL\nfrom tests.pipeline.linking import test_stages\n"
                     "import tests.pipeline.test_metrics\nfrom tests.support.events import EXAMPLE\n"
                     "from tests.jobs.investigate.conftest import copy_demo\n")
    assert imported_test_modules(tree) == ["tests.schemas.test_event", "tests.pipeline.linking.test_stages",
                                           "tests.pipeline.test_metrics", "tests.jobs.investigate.conftest"]
