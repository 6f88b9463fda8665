"""Plain-Python reference of the frame kernels: the specification they are tested against.

Written for clarity, not speed: dictionaries of frames, Python numbers, the same
event-time rules as ``frames.py`` (per-partition watermark, allowed lateness,
late events counted and dropped, frames closed oldest first and folded into
decayed windows) and the same sketch arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipeline.kernels import layout as L

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
    counters: list[int] = field(default_factory=lambda: [0] * L.N_COUNTERS)
    floats: list[float] = field(default_factory=lambda: [0.0] * L.N_FLOATS)
    sketches: list[list[int]] = field(default_factory=lambda: [[0] * (1 << b) for b in L.HLL_BITS])


@dataclass
class RefAccount:
    last_ts: int | None = None
    window_minute: int | None = None
    windows: list[list[float]] = field(default_factory=lambda: [[0.0] * L.N_WINDOW_Q for _ in L.WINDOW_MINUTES])
    recent_sim: list[int] = field(default_factory=lambda: [0] * L.RECENT_SIMHASHES)
    sim_next: int = 0


# One closed frame: (slot, minute, counters, floats, distinct, windows) as tuples
ClosedFrame = tuple[int, int, tuple[int, ...], tuple[float, ...], tuple[int, ...], tuple[tuple[float, ...], ...]]


def _f32(x: float) -> float:
    """Round to float32 like the kernel's window arrays."""
    import numpy as np

    return float(np.float32(x))


@dataclass
class ReferenceFrames:
    lateness_ms: int
    n_partitions: int
    frames: dict[tuple[int, int], RefFrame] = field(default_factory=dict)
    accounts: dict[int, RefAccount] = field(default_factory=dict)
    slot_part: dict[int, int] = field(default_factory=dict)
    part_max_ts: list[int] = field(default_factory=list)
    part_late: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.part_max_ts = [L.NO_TIME] * self.n_partitions
        self.part_late = [0] * self.n_partitions

    def ingest(self, events: list[dict[str, float]]) -> int:
        """Fold events (dicts with the kernel's column names) in order; returns late count."""
        late = 0
        for e in events:
            s, p, t = int(e["slot"]), int(e["part"]), int(e["ts_ms"])
            minute = t // L.FRAME_MS
            if (minute + 1) * L.FRAME_MS <= self.part_max_ts[p] - self.lateness_ms:
                self.part_late[p] += 1
                late += 1
                continue
            self.part_max_ts[p] = max(self.part_max_ts[p], t)
            if s < 0:  # layout.WATERMARK_ONLY: the watermark sees the event, no slot's state does
                continue
            self.slot_part[s] = p
            acc = self.accounts.setdefault(s, RefAccount())
            frame = self.frames.setdefault((s, minute), RefFrame())
            c, fl, sk = frame.counters, frame.floats, frame.sketches
            if acc.last_ts is not None and t >= acc.last_ts:
                gap = (t - acc.last_ts) / 1000.0
                c[L.GAP_COUNT] += 1
                fl[L.GAP_SUM] += gap
                fl[L.GAP_SQ] += gap * gap
            if acc.last_ts is None or t > acc.last_ts:
                acc.last_ts = t
            f = int(e["flags"])
            c[L.CALLS] += 1
            c[L.PROMPT_TOKENS] += int(e["prompt_tokens"])
            c[L.COMPLETION_TOKENS] += int(e["completion_tokens"])
            c[L.REASONING_TOKENS] += int(e["reasoning_tokens"])
            for flag, idx in ((L.FLAG_REASONING, L.REASONING_CALLS), (L.FLAG_LOGPROBS, L.LOGPROB_CALLS),
                              (L.FLAG_DEEP_LOGPROBS, L.DEEP_LOGPROB_CALLS), (L.FLAG_LOGIT_BIAS, L.LOGIT_BIAS_CALLS),
                              (L.FLAG_MULTI_N, L.MULTI_N_CALLS), (L.FLAG_STREAM, L.STREAM_CALLS),
                              (L.FLAG_WIDE_LOGIT_BIAS, L.WIDE_BIAS_CALLS),
                              (L.FLAG_TINY_MAX_TOKENS, L.TINY_OUTPUT_CALLS),
                              (L.FLAG_CLIENT_MISMATCH, L.CLIENT_MISMATCH_CALLS),
                              (L.FLAG_NEW_MODEL, L.NEW_MODEL_CALLS)):
                c[idx] += bool(f & flag)
            status = int(e["status"])
            c[L.ERROR_CALLS] += status >= 400
            c[L.RATE_LIMITED_CALLS] += status == 429
            net = int(e["net"])
            c[L.ANON_CALLS] += net in (L.NET_VPN, L.NET_PROXY, L.NET_TOR)
            c[L.HOSTING_CALLS] += net == L.NET_HOSTING
            temp = float(e["temperature"])
            if not math.isnan(temp):
                c[L.TEMP_CALLS] += 1
                fl[L.TEMP_SUM] += temp
                fl[L.TEMP_SQ] += temp * temp
                c[L.TEMP_ZERO_CALLS] += temp == 0.0
            if int(e["prompt_hash"]):
                c[L.HASHED_CALLS] += 1
                ref_hll_add(sk[L.D_PROMPTS], int(e["prompt_hash"]), L.HLL_PROMPT_BITS)
            ref_hll_add(sk[L.D_IPS], ref_mix64(int(e["ip_key"])), L.HLL_IP_BITS)
            if int(e["ua_hash"]):
                ref_hll_add(sk[L.D_UAS], ref_mix64(int(e["ua_hash"])), L.HLL_UA_BITS)
            if int(e["asn"]):
                ref_hll_add(sk[L.D_ASNS], ref_mix64(int(e["asn"])), L.HLL_ASN_BITS)
            topic = int(e["topic_hash"])
            if topic:
                c[L.TOPIC_BUCKET0 + topic % L.TOPIC_BUCKETS] += 1
                ref_hll_add(sk[L.D_TOPICS], ref_mix64(topic), L.HLL_TOPIC_BITS)
            sim = int(e["simhash"])
            if sim:
                if any(prev and 0 < bin(sim ^ prev).count("1") <= L.NEAR_DUP_BITS for prev in acc.recent_sim):
                    c[L.NEAR_DUP_CALLS] += 1
                acc.recent_sim[acc.sim_next] = sim
                acc.sim_next = (acc.sim_next + 1) % L.RECENT_SIMHASHES
        return late

    def close(self, force: bool = False) -> list[ClosedFrame]:
        """Emit and forget closed frames, oldest first per account, folding them into windows."""
        out: list[ClosedFrame] = []
        for s, minute in sorted(self.frames):
            wm = self.part_max_ts[self.slot_part[s]] - self.lateness_ms
            if force or (minute + 1) * L.FRAME_MS <= wm:
                out.append(self._emit(s, minute, self.frames.pop((s, minute))))
        return out

    def _emit(self, s: int, minute: int, frame: RefFrame) -> ClosedFrame:
        acc = self.accounts[s]
        distinct = tuple(ref_hll_estimate(regs) for regs in frame.sketches)
        values = [float(x) for x in frame.counters] + list(frame.floats) + [float(d) for d in distinct] + [1.0]
        for w, tau in enumerate(L.WINDOW_MINUTES):
            decay = 0.0 if acc.window_minute is None else math.exp(-float(minute - acc.window_minute) / tau)
            acc.windows[w] = [_f32(old * decay + x) for old, x in zip(acc.windows[w], values, strict=True)]
        acc.window_minute = minute
        return (s, minute, tuple(frame.counters), tuple(frame.floats), distinct,
                tuple(tuple(w) for w in acc.windows))
