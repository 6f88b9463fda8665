"""Plain-Python reference of the frame kernels: the specification they are tested against.

Written for clarity, not speed: dictionaries of frames, Python integers, the same
event-time rules as ``frames.py`` (per-partition watermark, allowed lateness,
late events counted and dropped) and the same HyperLogLog arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.kernels.layout import (
    CALLS,
    COMPLETION_TOKENS,
    DEEP_LOGPROB_CALLS,
    ERROR_CALLS,
    FLAG_DEEP_LOGPROBS,
    FLAG_LOGIT_BIAS,
    FLAG_LOGPROBS,
    FLAG_MULTI_N,
    FLAG_REASONING,
    FRAME_MS,
    HASHED_CALLS,
    HLL_IP_BITS,
    HLL_PROMPT_BITS,
    LOGIT_BIAS_CALLS,
    LOGPROB_CALLS,
    MULTI_N_CALLS,
    N_COUNTERS,
    NO_TIME,
    PROMPT_TOKENS,
    RATE_LIMITED_CALLS,
    REASONING_CALLS,
    REASONING_TOKENS,
)

_MASK = (1 << 64) - 1


def ref_mix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def ref_hll_add(registers: list[int], h: int, bits: int) -> None:
    idx = h >> (64 - bits)
    rest = (h << bits) & _MASK
    rank = min(64 - rest.bit_length() + 1, 64 - bits + 1)
    registers[idx] = max(registers[idx], rank)


def ref_hll_estimate(registers: list[int]) -> int:
    m = len(registers)
    zeros = registers.count(0)
    if zeros == m:
        return 0
    total = 0.0
    for v in registers:
        total += 1.0 / float(1 << v)
    alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1.0 + 1.079 / m))
    estimate = alpha * m * m / total
    if estimate <= 2.5 * m and zeros > 0:
        estimate = m * math.log(m / zeros)
    return int(estimate + 0.5)


@dataclass
class RefFrame:
    counters: list[int] = field(default_factory=lambda: [0] * N_COUNTERS)
    hll_prompt: list[int] = field(default_factory=lambda: [0] * (1 << HLL_PROMPT_BITS))
    hll_ip: list[int] = field(default_factory=lambda: [0] * (1 << HLL_IP_BITS))


# One closed frame: (slot, minute, counters, distinct_prompts, distinct_ips)
ClosedFrame = tuple[int, int, tuple[int, ...], int, int]


@dataclass
class ReferenceFrames:
    lateness_ms: int
    n_partitions: int
    frames: dict[tuple[int, int], RefFrame] = field(default_factory=dict)
    slot_part: dict[int, int] = field(default_factory=dict)
    part_max_ts: list[int] = field(default_factory=list)
    part_late: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.part_max_ts = [NO_TIME] * self.n_partitions
        self.part_late = [0] * self.n_partitions

    def ingest(self, events: list[dict[str, int]]) -> int:
        """Fold events (dicts with the kernel's column names) in order; returns late count."""
        late = 0
        for e in events:
            s, p, t = e["slot"], e["part"], e["ts_ms"]
            minute = t // FRAME_MS
            if (minute + 1) * FRAME_MS <= self.part_max_ts[p] - self.lateness_ms:
                self.part_late[p] += 1
                late += 1
                continue
            self.part_max_ts[p] = max(self.part_max_ts[p], t)
            self.slot_part[s] = p
            frame = self.frames.setdefault((s, minute), RefFrame())
            c = frame.counters
            c[CALLS] += 1
            c[PROMPT_TOKENS] += e["prompt_tokens"]
            c[COMPLETION_TOKENS] += e["completion_tokens"]
            c[REASONING_TOKENS] += e["reasoning_tokens"]
            f = e["flags"]
            c[REASONING_CALLS] += bool(f & FLAG_REASONING)
            c[LOGPROB_CALLS] += bool(f & FLAG_LOGPROBS)
            c[DEEP_LOGPROB_CALLS] += bool(f & FLAG_DEEP_LOGPROBS)
            c[LOGIT_BIAS_CALLS] += bool(f & FLAG_LOGIT_BIAS)
            c[MULTI_N_CALLS] += bool(f & FLAG_MULTI_N)
            c[ERROR_CALLS] += e["status"] >= 400
            c[RATE_LIMITED_CALLS] += e["status"] == 429
            if e["prompt_hash"]:
                c[HASHED_CALLS] += 1
                ref_hll_add(frame.hll_prompt, e["prompt_hash"], HLL_PROMPT_BITS)
            ref_hll_add(frame.hll_ip, ref_mix64(e["ip_key"]), HLL_IP_BITS)
        return late

    def close(self, force: bool = False) -> list[ClosedFrame]:
        """Emit and forget frames whose end is at or before their partition's watermark."""
        out: list[ClosedFrame] = []
        for (s, minute), frame in list(self.frames.items()):
            wm = self.part_max_ts[self.slot_part[s]] - self.lateness_ms
            if force or (minute + 1) * FRAME_MS <= wm:
                out.append(
                    (s, minute, tuple(frame.counters), ref_hll_estimate(frame.hll_prompt),
                     ref_hll_estimate(frame.hll_ip))
                )
                del self.frames[(s, minute)]
        return out
