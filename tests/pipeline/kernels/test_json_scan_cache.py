"""The scanner's Numba cache follows the contract's constants, which Numba freezes into compiled code."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core.caching import FunctionCache

from pipeline.kernels.event_spec import SPEC_FINGERPRINT
from pipeline.kernels.json_scan import drop_stale_cache, scan_events

_PROBE_KERNEL = """
from numba import njit

OFFSET = 3


@njit(cache=True)
def shifted(x):
    return x + OFFSET
"""


def _cached(dispatcher: object) -> bool:
    sig = dispatcher.signatures[0]  # type: ignore[attr-defined]
    return FunctionCache(dispatcher.py_func).load_overload(sig, dispatcher.targetctx) is not None  # type: ignore[attr-defined]


def test_the_fingerprint_is_the_same_in_every_process() -> None:
    """A cache keyed on it must not be dropped by every new worker (hash seeds differ per process)."""
    seen = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", "from pipeline.kernels.event_spec import SPEC_FINGERPRINT as F; print(F)"],
            capture_output=True, text=True, check=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": seed})
        seen.add(out.stdout.strip())
    assert seen == {SPEC_FINGERPRINT}


def test_importing_the_scanner_marks_its_cache_with_the_fingerprint() -> None:
    mark = Path(FunctionCache(scan_events.py_func).cache_path) / "json_scan.spec"
    assert mark.read_text() == SPEC_FINGERPRINT


def test_a_cache_compiled_from_other_constants_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "h6_probe_kernel.py").write_text(_PROBE_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    kernel = importlib.import_module("h6_probe_kernel").shifted
    assert kernel(1) == 4 and _cached(kernel)
    cache = FunctionCache(kernel.py_func)

    assert drop_stale_cache([kernel], "spec A", "probe.spec")  # no mark yet: compiled from unknown constants
    assert not _cached(kernel)
    cache.save_overload(kernel.signatures[0], kernel.overloads[kernel.signatures[0]])  # recompiled under spec A
    assert not drop_stale_cache([kernel], "spec A", "probe.spec") and _cached(kernel)
    assert drop_stale_cache([kernel], "spec B", "probe.spec") and not _cached(kernel)
    assert (Path(cache.cache_path) / "probe.spec").read_text() == "spec B"
