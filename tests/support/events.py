"""Contract events for tests: the documented example, and its required fields only."""

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
