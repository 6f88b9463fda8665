"""Schema migrations as code: one module per change, ``mNNNN_<name>.py``, applied in order.

Each module defines ``VERSION: int`` (equal to its file number), ``NAME: str``,
``forwards(database) -> list[str]`` and ``backwards(database) -> list[str]``,
returning SQL statements. Every statement must be re-runnable (``IF NOT EXISTS`` /
``IF EXISTS``) because a crash between a statement and the bookkeeping row
makes the runner repeat the whole migration. ``schemas.migrate`` applies them.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType

_MODULE_NAME = re.compile(r"^m(\d{4})_([a-z0-9_]+)$")

Statements = Callable[[str], list[str]]


class MigrationError(RuntimeError):
    """The migration modules (or the database's record of them) are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: str  # dotted module name; its last part carries the file number
    forwards: Statements
    backwards: Statements

    @property
    def file_number(self) -> int | None:
        match = _MODULE_NAME.match(self.module.rpartition(".")[2])
        return int(match.group(1)) if match else None


def discover(package: str = __name__) -> list[Migration]:
    """Import every ``mNNNN_*`` module of ``package`` and return the migrations by version.

    Raises MigrationError if a module is misnamed or incomplete, or if the
    numbering is not contiguous from 1 (see ``validate``). Modules whose name
    starts with ``_`` are helpers and are skipped.
    """
    pkg = importlib.import_module(package)
    found = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        if not _MODULE_NAME.match(info.name):
            raise MigrationError(f"{package}.{info.name}: migration modules must be named mNNNN_<name>")
        found.append(_load(importlib.import_module(f"{package}.{info.name}")))
    return validate(found)


def validate(migrations: Iterable[Migration]) -> list[Migration]:
    """Check numbering and return the migrations sorted by version.

    Raises MigrationError when a VERSION differs from its file number, a version
    repeats, or the versions are not exactly 1..N (a gap or a missing first one).
    """
    ordered = sorted(migrations, key=lambda m: m.version)
    for m in ordered:
        if m.file_number != m.version:
            raise MigrationError(
                f"{m.module}: VERSION = {m.version} but the file is numbered {m.file_number}"
            )
    for expected, m in enumerate(ordered, start=1):
        if m.version < expected:
            raise MigrationError(f"migration version {m.version} is defined twice ({m.module})")
        if m.version > expected:
            raise MigrationError(
                f"migration numbering has a gap: version {expected} is missing before {m.module}"
            )
    return ordered


def _load(module: ModuleType) -> Migration:
    version = getattr(module, "VERSION", None)
    name = getattr(module, "NAME", None)
    forwards = getattr(module, "forwards", None)
    backwards = getattr(module, "backwards", None)
    # bool is an int subclass; VERSION = True is a typo, not version 1.
    if not isinstance(version, int) or isinstance(version, bool):
        raise MigrationError(f"{module.__name__}: VERSION must be an int")
    if not isinstance(name, str) or not name:
        raise MigrationError(f"{module.__name__}: NAME must be a non-empty str")
    if not callable(forwards) or not callable(backwards):
        raise MigrationError(f"{module.__name__}: forwards(database) and backwards(database) are required")
    return Migration(version, name, module.__name__, forwards, backwards)
