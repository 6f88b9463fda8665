"""``memory``: resident memory added per active account, measured in a fresh child process.

The child builds a Detector (as the worker does), loads the kernels with a few
warm-up events, notes its RSS, then feeds one event per account in one minute
and one more per account ten minutes later (which closes, scores and emits the
first frames, so every account also has its alert-rule state). With the input
batches dropped, RSS again: the difference over the account count is the state
one active account costs.

    python -m jobs.bench.memory ACCOUNTS PARTITIONS
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import sys
from typing import Any

import numpy as np

from jobs.bench.procs import rss_bytes, run_json_child

CHUNK = 50_000  # events per batch, the worker's default batch size
BASE_TS = 1_770_854_400_000  # 2026-02-12T00:00:00Z


class _Inputs:
    """Small string pools built once, so building the input costs little next to the detector."""

    def __init__(self) -> None:
        self.ips = np.array([f"10.{i >> 8}.{i & 255}.{i % 7 + 1}" for i in range(4096)], object)
        self.agents = np.array([f"sdk/{i}" for i in range(50)], object)
        self.topics = np.array(["math", "code", "legal"], object)

    def batch(self, first: int, count: int, partition: int, ts_ms: int) -> object:
        from pipeline.decode.batched import decode_batched_message
        from pipeline.producer.batch_encoder import encode_columns

        ids = np.arange(first, first + count)
        accounts = [f"mem-{i:07d}" for i in ids.tolist()]  # made here: the registry keeps them (state)
        columns = {
            "event_id": accounts,  # unique within the batch; the detector keeps no event ids
            "ts": np.full(count, ts_ms, np.int64) + ids % 1000,
            "account_id": accounts,
            "api_key_id": accounts,
            "client_ip": self.ips[ids % len(self.ips)].tolist(),
            "endpoint": ["/v1/chat/completions"] * count,
            "model": ["frontier-large"] * count,
            "user_agent": self.agents[ids % len(self.agents)].tolist(),
            "topic": self.topics[ids % len(self.topics)].tolist(),
            "status": np.full(count, 200, np.int64),
            "prompt_tokens": (ids % 900 + 100).astype(np.int64),
            "completion_tokens": (ids % 500 + 10).astype(np.int64),
            "prompt_hash": (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1),
            "prompt_simhash": (ids.astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9)) | np.uint64(1),
            "temperature": np.full(count, 0.7),
        }
        return decode_batched_message(encode_columns(columns), None, partition, 0, max_message_bytes=65_536,
                                      max_ts_ms=2**62)


def _settled_rss() -> int:
    """RSS after a full collection and returning free heap pages to the OS (freed inputs are not state)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def measure(accounts: int, partitions: int) -> dict[str, int]:
    from pipeline.detect.detector import Detector
    from pipeline.settings import load_settings

    warm = 64
    inputs = _Inputs()
    detector = Detector(load_settings(max_accounts=warm + accounts), partitions)
    for minute in (0, 10):  # load every compiled path (ingest, close, score) before the baseline
        detector.process(inputs.batch(0, warm, 0, BASE_TS - 3_600_000 + minute * 60_000))  # type: ignore[arg-type]
    before = _settled_rss()
    for minute in (0, 10):
        for c, first in enumerate(range(warm, warm + accounts, CHUNK)):
            count = min(CHUNK, warm + accounts - first)
            detector.process(inputs.batch(first, count, c % partitions, BASE_TS + minute * 60_000))  # type: ignore[arg-type]
    after = _settled_rss()
    arrays = sum(a.nbytes for a in detector.frames.slot_arrays().values())
    return {"accounts": accounts, "registered": len(detector.accounts) - warm, "rss_before": before,
            "rss_after": after, "state_arrays_bytes": arrays, "state_slots": detector.frames.capacity,
            "breakdown_bytes": _breakdown(detector, after - before)}


def _deep_size(container: object) -> int:
    """Bytes of a dict/list and the objects it holds (each counted once)."""
    seen: set[int] = set()
    total = sys.getsizeof(container)
    items = list(container.items()) if isinstance(container, dict) else list(container)  # type: ignore[call-overload]
    for item in items:
        for obj in item if isinstance(item, tuple) else (item,):
            if id(obj) not in seen:
                seen.add(id(obj))
                total += sys.getsizeof(obj)
    return total


def _breakdown(detector: object, rss_added: int) -> dict[str, int]:
    """Where the added RSS goes: kernel state arrays, registries and dicts; the rest is allocator overhead etc.

    Each input event's ``api_key_id`` is its account's (one key per account): every
    key's frames are its account's (``pipeline/state/api_keys.py``), so the key store
    stays empty and a key costs its registry entry and routing words only.
    """
    d: Any = detector
    k = d.api_keys
    parts = {
        "account_state_arrays": sum(a.nbytes for a in d.frames.slot_arrays().values()),
        "api_key_state_arrays": sum(a.nbytes for a in d.key_frames.slot_arrays().values()),
        "account_registry": _deep_size(d.accounts._slots) + sys.getsizeof(d.accounts.names),
        "api_key_registry": sys.getsizeof(k.keys._slots) + sys.getsizeof(k.keys.names)
        + sys.getsizeof(k.key_account) + k.key_slot.nbytes + k.account_key.nbytes
        + sys.getsizeof(k.split._slots) + sys.getsizeof(k.split.names),  # key strings: counted as unattributed
        "max_score_dict": sys.getsizeof(d.max_score),
        "alert_rule_state": _deep_size(d.alert_state.subjects) + _deep_size(d.alert_state.links),
    }
    parts["unattributed"] = rss_added - sum(parts.values())
    return parts


def run_child(accounts: int, partitions: int, timeout_s: float) -> dict[str, int]:
    return run_json_child("jobs.bench.memory", (accounts, partitions), timeout_s, "memory child")


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
