"""Kernel inputs derived from a decoded batch's raw columns: codes and hashes of strings.

Kept apart from the decoders so every decoder (JSON, batched) feeds the kernels the
same way. Strings repeat heavily (user agents, topics, network types), so each
distinct string is hashed once and cached (bounded).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.hashing import blake2b64
from schemas.event import NETWORK_TYPES

_NET_CODE = {name: code for code, name in enumerate(NETWORK_TYPES)}
_CACHE_MAX = 200_000
_hash_cache: dict[str, int] = {}


def string_hash(value: str) -> int:
    """Stable 64-bit hash of a string (0 for the empty string: "absent")."""
    if not value:
        return 0
    h = _hash_cache.get(value)
    if h is None:
        h = int.from_bytes(blake2b64(value), "little") or 1
        if len(_hash_cache) >= _CACHE_MAX:
            _hash_cache.clear()
        _hash_cache[value] = h
    return h


def _hashes(values: Sequence[str]) -> np.ndarray:
    cache = _hash_cache
    out = np.empty(len(values), np.uint64)
    for i, v in enumerate(values):
        h = cache.get(v)
        out[i] = h if h is not None else string_hash(v)
    return out


def derived_kernel_columns(raw: dict[str, object]) -> dict[str, np.ndarray]:
    """simhash, ua_hash, asn, topic_hash, net, temperature from api_calls-shaped raw columns."""
    nets = raw["network_type"]
    return {
        "simhash": np.asarray(raw["prompt_simhash"], np.uint64),
        "ua_hash": _hashes(raw["user_agent"]),  # type: ignore[arg-type]
        "asn": np.asarray(raw["asn"], np.uint32),
        "topic_hash": _hashes(raw["topic"]),  # type: ignore[arg-type]
        "net": np.fromiter((_NET_CODE[n] for n in nets), np.uint8, len(nets)),  # type: ignore[arg-type]
        "temperature": np.asarray(raw["temperature"], np.float32),
    }
