"""Random kernel input columns (late, near-duplicate, partly missing) and closed frames as comparable rows."""

from __future__ import annotations

import numpy as np

from pipeline.kernels.layout import FRAME_MS
from pipeline.state.frames import ClosedFrames


def random_events(rng: np.random.Generator, n: int, n_accounts: int, n_parts: int) -> dict[str, np.ndarray]:
    slot = rng.integers(0, n_accounts, n).astype(np.int32)
    # Mostly increasing time with out-of-order jitter of up to 5 minutes, so that
    # some events are late and some land in older, still-open frames.
    base = 1_770_000_000_000 + np.sort(rng.integers(0, 40 * FRAME_MS, n))
    jitter = np.where(rng.random(n) < 0.1, rng.integers(0, 5 * FRAME_MS, n), 0)
    hashes = rng.integers(0, 2**63, 50, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    templates = rng.integers(1, 2**63, 3, dtype=np.int64).astype(np.uint64)
    # near-duplicates: a template with 0-12 random bits flipped
    flips = np.zeros(n, np.uint64)
    for _ in range(12):
        bit = rng.integers(0, 64, n).astype(np.uint64)
        flips ^= np.where(rng.random(n) < 0.5, np.uint64(1) << bit, np.uint64(0))
    return {
        "slot": slot,
        "part": (slot % n_parts).astype(np.int16),  # an account lives in one partition
        "ts_ms": (base - jitter).astype(np.int64),
        "prompt_tokens": rng.integers(0, 5000, n).astype(np.uint32),
        "completion_tokens": rng.integers(0, 5000, n).astype(np.uint32),
        "reasoning_tokens": rng.integers(0, 3000, n).astype(np.uint32),
        "prompt_hash": np.where(rng.random(n) < 0.9, hashes[rng.integers(0, 50, n)], np.uint64(0)),
        "simhash": np.where(rng.random(n) < 0.8, templates[rng.integers(0, 3, n)] ^ flips, np.uint64(0)),
        "ip_key": rng.integers(0, 20, n).astype(np.uint64) + np.uint64(3232235776),
        "ua_hash": np.where(rng.random(n) < 0.9, rng.integers(1, 6, n).astype(np.uint64) * np.uint64(7919),
                            np.uint64(0)),
        "asn": np.where(rng.random(n) < 0.8, rng.integers(1, 9, n), 0).astype(np.uint32),
        "topic_hash": np.where(rng.random(n) < 0.7, rng.integers(1, 12, n).astype(np.uint64) * np.uint64(104729),
                               np.uint64(0)),
        "net": rng.integers(0, 8, n).astype(np.uint8),
        "temperature": np.where(rng.random(n) < 0.6, rng.choice(np.array([0.0, 0.7, 1.3], np.float32), n),
                                np.float32(np.nan)).astype(np.float32),
        "status": rng.choice(np.array([200, 200, 200, 400, 429, 500], np.uint16), n),
        "flags": rng.integers(0, 256, n).astype(np.uint8),
    }


def as_rows(frames: ClosedFrames) -> set[tuple]:
    return {
        (int(frames.slot[i]), int(frames.minute[i]), tuple(int(x) for x in frames.counters[i]),
         tuple(float(x) for x in frames.floats[i]), tuple(int(x) for x in frames.distinct[i]),
         tuple(tuple(float(x) for x in w) for w in frames.windows[i]))
        for i in range(len(frames))
    }
