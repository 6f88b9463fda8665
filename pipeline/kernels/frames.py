"""Numba kernels: per-account one-minute frames in event time, rolled into windows.

Pure functions over NumPy arrays; they mutate only the state arrays they are given
and write results into output arrays the caller allocates. No Faust, no I/O.

Event-time rules (Flink's bounded-out-of-orderness watermark, per Kafka partition):
- Each partition's watermark is its largest event time seen minus the allowed
  lateness. An account lives in one partition (the message key is the account),
  so its frames depend only on that partition's order, which Kafka keeps: the
  result is the same however the input is cut into batches.
- An event whose minute frame ended at or before its partition's watermark is
  late: it is counted per partition and not added to any frame.
- A frame closes once its end is at or before the watermark. Closing emits it and
  folds it into the account's rolled windows (decayed sums, ``layout.WINDOW_MINUTES``).
  An account's frames are always closed in minute order, so the windows do not
  depend on when closing happens.

State per account slot ``s`` and ring position ``r`` (``r = minute % R``):
``frame_minute[s, r]`` (``NO_FRAME`` when empty), ``counters[s, r]``,
``floats[s, r]``, ``hll[s, r]`` (sketch sections at ``HLL_OFFSETS``); per account:
``windows[s]`` (float32 [N_WINDOWS, N_WINDOW_Q]), ``acct[s]`` (int64 scalars,
``AS_*``), ``recent_sim[s]`` (the last simhashes), ``slot_part[s]`` (its
partition) and ``dirty[s]`` (set on every change; the checkpoint clears it).

Output rows (one per closed frame) are written to an ``Out`` tuple of arrays:
slot, minute, counters, floats, distinct counts and the windows after folding.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

from pipeline.kernels.hll import hll_add, hll_estimate, mix64
from pipeline.kernels.layout import (
    ANON_CALLS,
    AS_LAST_TS,
    AS_SIMHASH_NEXT,
    AS_WINDOW_MINUTE,
    CALLS,
    COMPLETION_TOKENS,
    DEEP_LOGPROB_CALLS,
    ERROR_CALLS,
    FLAG_DEEP_LOGPROBS,
    FLAG_LOGIT_BIAS,
    FLAG_LOGPROBS,
    FLAG_MULTI_N,
    FLAG_REASONING,
    FLAG_STREAM,
    FRAME_MS,
    GAP_COUNT,
    GAP_SQ,
    GAP_SUM,
    HASHED_CALLS,
    HLL_ASN_BITS,
    HLL_IP_BITS,
    HLL_OFFSETS,
    HLL_PROMPT_BITS,
    HLL_TOPIC_BITS,
    HLL_UA_BITS,
    HOSTING_CALLS,
    LOGIT_BIAS_CALLS,
    LOGPROB_CALLS,
    MULTI_N_CALLS,
    N_DISTINCT,
    NEAR_DUP_BITS,
    NEAR_DUP_CALLS,
    NET_HOSTING,
    NET_PROXY,
    NET_TOR,
    NET_VPN,
    NO_FRAME,
    NO_TIME,
    PROMPT_TOKENS,
    RATE_LIMITED_CALLS,
    REASONING_CALLS,
    REASONING_TOKENS,
    STREAM_CALLS,
    TEMP_CALLS,
    TEMP_SQ,
    TEMP_SUM,
    TEMP_ZERO_CALLS,
    TOPIC_BUCKET0,
    TOPIC_BUCKETS,
    WINDOW_MINUTES,
    WQ_ACTIVE,
    WQ_DISTINCT,
    WQ_FLOATS,
)

_HLL_BITS = (HLL_PROMPT_BITS, HLL_IP_BITS, HLL_UA_BITS, HLL_ASN_BITS, HLL_TOPIC_BITS)
_P0, _P1, _P2, _P3, _P4 = HLL_OFFSETS
_E0, _E1, _E2, _E3, _E4 = (HLL_OFFSETS[i] + (1 << _HLL_BITS[i]) for i in range(5))
_TAU = np.array(WINDOW_MINUTES, np.float64)


@njit(cache=True, nogil=True)
def popcount64(x: np.uint64) -> int:
    x = uint64(x)
    n = 0
    while x:
        x &= x - uint64(1)
        n += 1
    return n


@njit(cache=True, nogil=True)
def _emit(s, r, frame_minute, counters, floats, hll, windows, acct,
          o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows, k):
    """Close frame (s, r) into output row k: fold it into the windows, then clear it."""
    minute = frame_minute[s, r]
    o_slot[k] = s
    o_minute[k] = minute
    n_c = counters.shape[2]
    n_f = floats.shape[2]
    for c in range(n_c):
        o_counters[k, c] = counters[s, r, c]
    for f in range(n_f):
        o_floats[k, f] = floats[s, r, f]
    o_distinct[k, 0] = hll_estimate(hll[s, r, _P0:_E0])
    o_distinct[k, 1] = hll_estimate(hll[s, r, _P1:_E1])
    o_distinct[k, 2] = hll_estimate(hll[s, r, _P2:_E2])
    o_distinct[k, 3] = hll_estimate(hll[s, r, _P3:_E3])
    o_distinct[k, 4] = hll_estimate(hll[s, r, _P4:_E4])
    last = acct[s, AS_WINDOW_MINUTE]
    for w in range(windows.shape[1]):
        decay = 0.0 if last == NO_FRAME else math.exp(-float(minute - last) / _TAU[w])
        for c in range(n_c):
            windows[s, w, c] = windows[s, w, c] * decay + counters[s, r, c]
        for f in range(n_f):
            windows[s, w, WQ_FLOATS + f] = windows[s, w, WQ_FLOATS + f] * decay + floats[s, r, f]
        for d in range(N_DISTINCT):
            windows[s, w, WQ_DISTINCT + d] = windows[s, w, WQ_DISTINCT + d] * decay + o_distinct[k, d]
        windows[s, w, WQ_ACTIVE] = windows[s, w, WQ_ACTIVE] * decay + 1.0
        for q in range(windows.shape[2]):
            o_windows[k, w, q] = windows[s, w, q]
    acct[s, AS_WINDOW_MINUTE] = minute
    counters[s, r, :] = 0
    floats[s, r, :] = 0.0
    hll[s, r, :] = 0
    frame_minute[s, r] = NO_FRAME


@njit(cache=True, nogil=True)
def _count_closable(s, frame_minute, wm, force):
    n = 0
    for r in range(frame_minute.shape[1]):
        m = frame_minute[s, r]
        if m != NO_FRAME and (force or (m + 1) * FRAME_MS <= wm):
            n += 1
    return n


@njit(cache=True, nogil=True)
def _close_slot(s, wm, force, frame_minute, counters, floats, hll, windows, acct, dirty,
                o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows, k):
    """Emit every closable frame of slot s, oldest minute first; returns the next output row."""
    while True:
        best_r = -1
        best_m = 0
        for r in range(frame_minute.shape[1]):
            m = frame_minute[s, r]
            if m != NO_FRAME and (force or (m + 1) * FRAME_MS <= wm) and (best_r < 0 or m < best_m):
                best_r = r
                best_m = m
        if best_r < 0:
            return k
        _emit(s, best_r, frame_minute, counters, floats, hll, windows, acct,
              o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows, k)
        dirty[s] = 1
        k += 1


@njit(cache=True, nogil=True)
def ingest_events(
    start, slot, part, ts_ms, prompt_tokens, completion_tokens, reasoning_tokens, prompt_hash, simhash,
    ip_key, ua_hash, asn, topic_hash, net, temperature, status, flags,
    frame_minute, counters, floats, hll, windows, acct, recent_sim, slot_part, dirty,
    part_max_ts, part_late, lateness_ms,
    o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows,
):
    """Fold events [start, n) in arrival order; returns (next event, rows emitted, late events).

    A ring position needed by a newer minute holds a frame that is already closed
    (``layout.ring_size``); the slot's closed frames are emitted first, oldest
    first. When the output arrays cannot take a slot's frames, the kernel stops
    before that event and returns its index: call again with ``start`` = it after
    draining the output.
    """
    n_ring = frame_minute.shape[1]
    cap = o_slot.shape[0]
    emitted = 0
    late = 0
    i = start
    while i < slot.shape[0]:
        s = slot[i]
        p = part[i]
        t = ts_ms[i]
        minute = t // FRAME_MS
        if (minute + 1) * FRAME_MS <= part_max_ts[p] - lateness_ms:
            part_late[p] += 1
            late += 1
            i += 1
            continue
        r = minute % n_ring
        if frame_minute[s, r] != minute and frame_minute[s, r] != NO_FRAME:
            wm = max(part_max_ts[p], t) - lateness_ms
            if emitted + _count_closable(s, frame_minute, wm, False) > cap:
                return i, emitted, late
            emitted = _close_slot(s, wm, False, frame_minute, counters, floats, hll, windows, acct, dirty,
                                  o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows, emitted)
        if t > part_max_ts[p]:
            part_max_ts[p] = t
        slot_part[s] = p
        dirty[s] = 1
        frame_minute[s, r] = minute
        # inter-arrival gap (in arrival order; a call older than the latest is not a gap)
        last = acct[s, AS_LAST_TS]
        if last != NO_TIME and t >= last:
            gap = (t - last) / 1000.0
            counters[s, r, GAP_COUNT] += 1
            floats[s, r, GAP_SUM] += gap
            floats[s, r, GAP_SQ] += gap * gap
        if last == NO_TIME or t > last:
            acct[s, AS_LAST_TS] = t
        f = flags[i]
        c = counters[s, r]
        c[CALLS] += 1
        c[PROMPT_TOKENS] += prompt_tokens[i]
        c[COMPLETION_TOKENS] += completion_tokens[i]
        c[REASONING_TOKENS] += reasoning_tokens[i]
        if f & FLAG_REASONING:
            c[REASONING_CALLS] += 1
        if f & FLAG_LOGPROBS:
            c[LOGPROB_CALLS] += 1
        if f & FLAG_DEEP_LOGPROBS:
            c[DEEP_LOGPROB_CALLS] += 1
        if f & FLAG_LOGIT_BIAS:
            c[LOGIT_BIAS_CALLS] += 1
        if f & FLAG_MULTI_N:
            c[MULTI_N_CALLS] += 1
        if f & FLAG_STREAM:
            c[STREAM_CALLS] += 1
        st = status[i]
        if st >= 400:
            c[ERROR_CALLS] += 1
            if st == 429:
                c[RATE_LIMITED_CALLS] += 1
        nt = net[i]
        if nt == NET_VPN or nt == NET_PROXY or nt == NET_TOR:  # noqa: SIM109 - tuple "in" is slower in Numba
            c[ANON_CALLS] += 1
        elif nt == NET_HOSTING:
            c[HOSTING_CALLS] += 1
        temp = np.float64(temperature[i])
        if not math.isnan(temp):
            c[TEMP_CALLS] += 1
            floats[s, r, TEMP_SUM] += temp
            floats[s, r, TEMP_SQ] += temp * temp
            if temp == 0.0:
                c[TEMP_ZERO_CALLS] += 1
        h = prompt_hash[i]
        if h != 0:
            c[HASHED_CALLS] += 1
            hll_add(hll[s, r, _P0:_E0], h, HLL_PROMPT_BITS)
        hll_add(hll[s, r, _P1:_E1], mix64(ip_key[i]), HLL_IP_BITS)
        if ua_hash[i] != 0:
            hll_add(hll[s, r, _P2:_E2], mix64(ua_hash[i]), HLL_UA_BITS)
        if asn[i] != 0:
            hll_add(hll[s, r, _P3:_E3], mix64(uint64(asn[i])), HLL_ASN_BITS)
        th = topic_hash[i]
        if th != 0:
            c[TOPIC_BUCKET0 + int(th % uint64(TOPIC_BUCKETS))] += 1
            hll_add(hll[s, r, _P4:_E4], mix64(th), HLL_TOPIC_BITS)
        sim = simhash[i]
        if sim != 0:
            for j in range(recent_sim.shape[1]):
                prev = recent_sim[s, j]
                if prev != 0:
                    d = popcount64(sim ^ prev)
                    if 0 < d <= NEAR_DUP_BITS:
                        c[NEAR_DUP_CALLS] += 1
                        break
            nxt = acct[s, AS_SIMHASH_NEXT]
            recent_sim[s, nxt] = sim
            acct[s, AS_SIMHASH_NEXT] = (nxt + 1) % recent_sim.shape[1]
        i += 1
    return i, emitted, late


@njit(cache=True, nogil=True)
def count_closed_frames(n_slots, frame_minute, slot_part, part_max_ts, lateness_ms, force):
    """How many frames ``collect_closed_frames`` would emit now (to size its output)."""
    total = 0
    for s in range(n_slots):
        total += _count_closable(s, frame_minute, part_max_ts[slot_part[s]] - lateness_ms, force)
    return total


@njit(cache=True, nogil=True)
def collect_closed_frames(
    n_slots, frame_minute, counters, floats, hll, windows, acct, slot_part, dirty, part_max_ts, lateness_ms,
    force, o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows,
):
    """Emit every frame whose end is at or before its partition's watermark.

    ``force`` emits every open frame: the watermark jumps to +infinity at the end
    of bounded input (replay). Returns the number of rows written.
    """
    k = 0
    for s in range(n_slots):
        wm = part_max_ts[slot_part[s]] - lateness_ms
        k = _close_slot(s, wm, force, frame_minute, counters, floats, hll, windows, acct, dirty,
                        o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows, k)
    return k
