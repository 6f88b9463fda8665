"""Contract events for tests: the documented example, its required fields only, and a numbered stream."""

from __future__ import annotations

from typing import Any

import numpy as np

EXAMPLE: dict[str, Any] = {
    "event_id": "01JM4Z8Q9X", "ts": "2026-02-12T09:30:00.123Z", "account_id": "org-7731",
    "api_key_id": "key-19f2", "client_ip": "203.0.113.7", "asn": 64500, "network_type": "hosting",
    "user_agent": "python-httpx/0.27", "endpoint": "/v1/chat/completions", "model": "frontier-large",
    "status": 200, "latency_ms": 812, "prompt_tokens": 412, "completion_tokens": 1530,
    "reasoning_tokens": 900, "prompt_hash": "9f86d081884c7d65", "prompt_simhash": "c3a1f00e9b2d4471",
    "topic": "math", "elicits_reasoning": True, "temperature": 0.0, "n": 1, "logprobs": True,
    "top_logprobs": 5,
}
MINIMAL = {k: EXAMPLE[k] for k in ("event_id", "ts", "account_id", "api_key_id", "client_ip", "endpoint",
                                   "model", "status", "prompt_tokens", "completion_tokens")}


def poisson_offsets_ms(n: int, mean_gap_ms: float, seed: int = 0) -> list[int]:
    """Arrival times (ms from 0) of ``n`` calls with exponential gaps: people and apps, not a metronome.

    Metronome-regular test traffic that runs for minutes with long answers is what
    ``machine_regularity`` flags, whatever else a test is about.
    """
    gaps = np.random.default_rng(seed).exponential(mean_gap_ms, n)
    return np.concatenate([[0.0], np.cumsum(gaps[1:])]).astype(np.int64).tolist()


# The numbered stream: varied valid events over 12 accounts, in time order within 5 s of jitter.
BASE_TS = 1_770_888_600_000  # 2026-02-12T09:30:00Z
ACCOUNTS = [f"org-{i}" for i in range(12)]
NETWORKS = ("residential", "hosting", "vpn", "tor", "business", "mobile")


def numbered_event(i: int) -> dict[str, Any]:
    account = ACCOUNTS[(i * 7 + i // 13) % len(ACCOUNTS)]
    e: dict[str, Any] = {
        **MINIMAL, "event_id": f"ev-{i}", "account_id": account, "api_key_id": f"key-{account}-{i % 3}",
        # In order, with up to 5 s of jitter: never late (lateness is 120 s).
        "ts": BASE_TS + i * 100 - (i * 7919) % 5000,
        "client_ip": f"198.51.100.{i % 23}", "network_type": NETWORKS[i % len(NETWORKS)],
        "prompt_tokens": 50 + (i * 31) % 900, "completion_tokens": (i * 17) % 700,
        "reasoning_tokens": (i % 5) * 40, "status": (200, 200, 200, 429, 500, 400)[i % 6],
        "prompt_hash": f"{(i * 2654435761) % 2**64:016x}",
    }
    if i % 4 == 0:
        e["elicits_reasoning"] = True
    if i % 5 == 0:
        e["logprobs"] = True
        e["top_logprobs"] = (i // 5) % 21
    if i % 7 == 0:
        e["n"] = 2 + i % 3
    if i % 3 == 0:
        e["temperature"] = (0.0, 0.7, 1.3)[(i // 3) % 3]
    if i % 11 == 0:
        e["stream"] = True
    if i % 9 == 0:
        e["logit_bias_count"] = i % 4
    return e
