"""What a production install (``pip install -c constraints.txt distillwatch``, no extras) holds: read from
pyproject.toml and the installed distributions' metadata, for the tests that the worker needs nothing more."""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "distillwatch"
FIRST_PARTY = frozenset({"pipeline", "schemas", "jobs", "tests", "__future__"})


@cache
def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def base_requirements() -> list[Requirement]:
    """``[project] dependencies``: what a production install asks for."""
    return [Requirement(r) for r in _project()["dependencies"]]


def extras() -> dict[str, list[Requirement]]:
    """Each extra's own requirements, without its references to other extras (``distillwatch[demo]``)."""
    return {name: [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != PROJECT]
            for name, reqs in _project()["optional-dependencies"].items()}


def installed_closure(requirements: Iterable[Requirement]) -> set[str]:
    """Canonical names of the distributions these requirements install (their dependencies too), as installed."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # not installed here: nothing of it can be imported either
        seen.add(name)
        for line in dist.requires or ():
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                todo.append(sub)
    return seen


@cache
def _module_providers() -> dict[str, list[str]]:
    return md.packages_distributions()  # reads every installed distribution's file list: once


def top_level_modules(distributions: set[str]) -> dict[str, set[str]]:
    """Importable top-level module -> the distributions among ``distributions`` that provide it."""
    found: dict[str, set[str]] = {}
    for module, dists in _module_providers().items():
        if module not in sys.stdlib_module_names and (ours := {canonicalize_name(d) for d in dists} & distributions):
            found[module] = ours
    return found


@cache
def extra_only_modules() -> frozenset[str]:
    """Top-level modules that only the extras install: a production worker cannot import them."""
    base = installed_closure(base_requirements())
    extra = installed_closure(r for reqs in extras().values() for r in reqs) - base
    return frozenset(top_level_modules(extra).keys() - top_level_modules(base).keys())


def third_party_imports(paths: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files (relative to the root) importing it, lazily or not."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for top in {n.partition(".")[0] for n in names} - FIRST_PARTY - sys.stdlib_module_names:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found
