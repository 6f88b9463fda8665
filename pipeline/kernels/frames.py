"""Numba kernels: per-account one-minute frames in event time, rolled into windows.

Pure functions over NumPy arrays: they mutate only the state arrays they are given and write
into output arrays the caller allocates (an ``Out`` tuple, one row per closed frame). No I/O.
Invariant: an account's frames depend only on its partition's order (per-partition watermark,
late events counted, not added) and close in minute order, so the result is the same however
the input is cut into batches. Event-time rules and the state arrays: docs/architecture.md
("Event time", "Kernels").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, uint64, uintp

from pipeline.kernels.bits import clz64, popcount64, prefetch
from pipeline.kernels.hll import hll_estimate_at, mix64
from pipeline.kernels.layout import (
    ANON_CALLS,
    AS_LAST_TS,
    AS_SIMHASH_NEXT,
    AS_WINDOW_MINUTE,
    CALLS,
    CLIENT_MISMATCH_CALLS,
    COMPLETION_TOKENS,
    DEEP_LOGPROB_CALLS,
    ERROR_CALLS,
    FLAG_CLIENT_MISMATCH,
    FLAG_DEEP_LOGPROBS,
    FLAG_LOGIT_BIAS,
    FLAG_LOGPROBS,
    FLAG_MULTI_N,
    FLAG_NEW_MODEL,
    FLAG_REASONING,
    FLAG_STREAM,
    FLAG_TINY_MAX_TOKENS,
    FLAG_WIDE_LOGIT_BIAS,
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
    NEW_MODEL_CALLS,
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
    TINY_OUTPUT_CALLS,
    TOKEN_COUNTER0,
    TOPIC_BUCKET0,
    TOPIC_BUCKETS,
    WIDE_BIAS_CALLS,
    WINDOW_MINUTES,
    WQ_ACTIVE,
    WQ_COUNTERS,
    WQ_DISTINCT,
    WQ_FLOATS,
)

_HLL_BITS = (HLL_PROMPT_BITS, HLL_IP_BITS, HLL_UA_BITS, HLL_ASN_BITS, HLL_TOPIC_BITS)
_P0, _P1, _P2, _P3, _P4 = HLL_OFFSETS
_E0, _E1, _E2, _E3, _E4 = (HLL_OFFSETS[i] + (1 << _HLL_BITS[i]) for i in range(5))
_TAU = np.array(WINDOW_MINUTES, np.float64)
# exp(-d / tau) for frame gaps of d < _DECAY_TABLE minutes, by Python's math.exp (what
# the reference computes): three exp calls per closed frame were a visible share of closing.
_DECAY_TABLE = 256
_DECAY = np.array([[math.exp(-float(d) / tau) for d in range(_DECAY_TABLE)] for tau in WINDOW_MINUTES], np.float64)
# Events looked ahead to prefetch their state rows: one account's rows sit in eight
# arrays (~13 cache lines), and with 100k+ accounts nearly every event misses DRAM.
# The hint overlaps those misses instead of paying them one event at a time.
PREFETCH_AHEAD = 10
# Slots looked ahead when closing frames in slot order (each closed frame touches ~20 lines).
CLOSE_AHEAD = 4


class EventArrays(NamedTuple):
    """One batch's event columns, all of one length (dtypes: ``EVENT_DTYPES``)."""

    slot: np.ndarray
    part: np.ndarray
    ts_ms: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    reasoning_tokens: np.ndarray
    prompt_hash: np.ndarray
    simhash: np.ndarray
    ip_key: np.ndarray
    ua_hash: np.ndarray
    asn: np.ndarray
    topic_hash: np.ndarray
    net: np.ndarray
    temperature: np.ndarray
    status: np.ndarray
    flags: np.ndarray


EVENT_DTYPES = EventArrays(
    slot=np.int32, part=np.int16, ts_ms=np.int64, prompt_tokens=np.uint32, completion_tokens=np.uint32,
    reasoning_tokens=np.uint32, prompt_hash=np.uint64, simhash=np.uint64, ip_key=np.uint64, ua_hash=np.uint64,
    asn=np.uint32, topic_hash=np.uint64, net=np.uint8, temperature=np.float32, status=np.uint16, flags=np.uint16,
)


class StateArrays(NamedTuple):
    """The frame state the kernels fold into (see the module docstring); per partition: the largest
    event time seen and the late events counted."""

    frame_minute: np.ndarray
    counters: np.ndarray
    token_carry: np.ndarray
    floats: np.ndarray
    hll: np.ndarray
    windows: np.ndarray
    acct: np.ndarray
    recent_sim: np.ndarray
    slot_part: np.ndarray
    dirty: np.ndarray
    part_max_ts: np.ndarray
    part_late: np.ndarray


class OutArrays(NamedTuple):
    """Rows of closed frames, written from row 0 (the caller allocates; the kernels say how many)."""

    slot: np.ndarray
    minute: np.ndarray
    counters: np.ndarray
    floats: np.ndarray
    distinct: np.ndarray
    windows: np.ndarray


@njit(cache=True, nogil=True)
def _hll_put(hll, s, r, off, h, bits):
    """hll_add on the section at ``off`` of sketch (s, r), without building a view."""
    idx = h >> uint64(64 - bits)
    rank = clz64(h << uint64(bits)) + 1
    cap = 64 - bits + 1
    if rank > cap:
        rank = cap
    j = idx + uint64(off)
    if hll[s, r, j] < rank:
        hll[s, r, j] = rank


@njit(cache=True, nogil=True)
def _add_tokens(counters, token_carry, s, r, c, v):
    """counters[s, r, c] += v for a token column, exactly: the low word there, the carry beside it."""
    x = uint64(counters[s, r, c]) + uint64(v)
    counters[s, r, c] = x & uint64(0xFFFFFFFF)
    token_carry[s, r, c - TOKEN_COUNTER0] += x >> uint64(32)


@njit(cache=True, nogil=True)
def _prefetch_span(arr, off, nbytes):
    """Hint every cache line of bytes [off, off + nbytes) of arr."""
    end = off + nbytes - 1
    while off < end:
        prefetch(arr, off)
        off += 64
    prefetch(arr, end)


@njit(cache=True, nogil=True)
def _prefetch_rows(s, r, state):
    """Hint every cache line the state of event (slot s, ring position r) will touch."""
    frame_minute, counters, token_carry, floats, hll, acct, recent_sim = (
        state.frame_minute, state.counters, state.token_carry, state.floats, state.hll, state.acct, state.recent_sim)
    _prefetch_span(frame_minute, s * frame_minute.strides[0], frame_minute.strides[0])
    _prefetch_span(counters, s * counters.strides[0] + r * counters.strides[1], counters.strides[1])
    _prefetch_span(token_carry, s * token_carry.strides[0] + r * token_carry.strides[1], token_carry.strides[1])
    _prefetch_span(hll, s * hll.strides[0] + r * hll.strides[1], hll.strides[1])
    _prefetch_span(floats, s * floats.strides[0] + r * floats.strides[1], floats.strides[1])
    _prefetch_span(acct, s * acct.strides[0], acct.strides[0])
    _prefetch_span(recent_sim, s * recent_sim.strides[0], recent_sim.strides[0])


@njit(cache=True, nogil=True)
def _decay(w, minute, last):
    """Weight of window w's old sums when a frame of ``minute`` follows one of ``last``."""
    if last == NO_FRAME:
        return 0.0
    d = minute - last
    if 0 <= d < _DECAY_TABLE:
        return _DECAY[w, d]
    return math.exp(-float(d) / _TAU[w])


@njit(cache=True, nogil=True)
def _emit(s, r, state, vals, out, k):
    """Close frame (s, r) into output row k: fold it into the windows, then clear it.

    ``vals`` (float64 [N_WINDOW_Q], scratch) gathers the frame's quantities once for
    all windows; every sum is the same float64 expression as before, rounded to float32.
    """
    frame_minute, counters, token_carry, floats, hll, windows, acct = (
        state.frame_minute, state.counters, state.token_carry, state.floats, state.hll, state.windows, state.acct)
    o_slot, o_minute, o_counters, o_floats, o_distinct, o_windows = out
    minute = frame_minute[s, r]
    o_slot[k] = s
    o_minute[k] = minute
    for c in range(counters.shape[2]):
        x = np.int64(counters[s, r, c])
        j = c - TOKEN_COUNTER0
        if 0 <= j < token_carry.shape[2]:
            x += np.int64(token_carry[s, r, j]) << 32
            token_carry[s, r, j] = 0
        o_counters[k, c] = x
        vals[WQ_COUNTERS + c] = float(x)
        counters[s, r, c] = 0
    for f in range(floats.shape[2]):
        x = floats[s, r, f]
        o_floats[k, f] = x
        vals[WQ_FLOATS + f] = x
        floats[s, r, f] = 0.0
    dist = (hll_estimate_at(hll, s, r, _P0, _E0 - _P0), hll_estimate_at(hll, s, r, _P1, _E1 - _P1),
            hll_estimate_at(hll, s, r, _P2, _E2 - _P2), hll_estimate_at(hll, s, r, _P3, _E3 - _P3),
            hll_estimate_at(hll, s, r, _P4, _E4 - _P4))
    for d in range(N_DISTINCT):
        o_distinct[k, d] = dist[d]
        vals[WQ_DISTINCT + d] = float(dist[d])
    vals[WQ_ACTIVE] = 1.0
    for j in range(hll.shape[2]):
        hll[s, r, j] = 0
    last = acct[s, AS_WINDOW_MINUTE]
    for w in range(windows.shape[1]):
        decay = _decay(w, minute, last)
        for q in range(windows.shape[2]):
            x = np.float32(windows[s, w, q] * decay + vals[q])
            windows[s, w, q] = x
            o_windows[k, w, q] = x
    acct[s, AS_WINDOW_MINUTE] = minute
    frame_minute[s, r] = NO_FRAME


@njit(cache=True, nogil=True)
def _closing_limit(wm):
    """Frames of minute m < this are closed under watermark wm: (m + 1) * FRAME_MS <= wm."""
    return wm // FRAME_MS


@njit(cache=True, nogil=True)
def _count_closable(s, frame_minute, limit, force):
    n = 0
    for r in range(frame_minute.shape[1]):
        m = frame_minute[s, r]
        if m != NO_FRAME and (force or m < limit):
            n += 1
    return n


@njit(cache=True, nogil=True)
def _close_slot(s, limit, force, state, vals, out, k):
    """Emit every closable frame of slot s (minute < limit), oldest first; returns the next output row."""
    frame_minute = state.frame_minute
    while True:
        best_r = -1
        best_m = 0
        for r in range(frame_minute.shape[1]):
            m = frame_minute[s, r]
            if m != NO_FRAME and (force or m < limit) and (best_r < 0 or m < best_m):
                best_r = r
                best_m = m
        if best_r < 0:
            return k
        _emit(s, best_r, state, vals, out, k)
        state.dirty[s] = 1
        k += 1


@njit(cache=True, nogil=True)
def ingest_events(start, events, state, lateness_ms, out):
    """Fold events [start, n) in arrival order; returns (next event, rows emitted, late events).

    An event of slot ``WATERMARK_ONLY`` (negative) only counts as late or moves its
    partition's watermark: its entity's state is kept elsewhere (an API key whose
    frames are its account's), but the watermark must see every event.
    A ring position needed by a newer minute holds a frame that is already closed
    (``layout.ring_size``); the slot's closed frames are emitted first, oldest
    first. When the output arrays cannot take a slot's frames, the kernel stops
    before that event and returns its index: call again with ``start`` = it after
    draining the output. ``events``: ``EventArrays``; ``state``: ``StateArrays``; ``out``: ``OutArrays``.
    """
    (slot, part, ts_ms, prompt_tokens, completion_tokens, reasoning_tokens, prompt_hash, simhash, ip_key, ua_hash,
     asn, topic_hash, net, temperature, status, flags) = events
    (frame_minute, counters, token_carry, floats, hll, windows, acct, recent_sim, slot_part, dirty, part_max_ts,
     part_late) = state
    n = slot.shape[0]
    n_ring = frame_minute.shape[1]
    n_sim = recent_sim.shape[1]
    cap = out.slot.shape[0]
    vals = np.empty(windows.shape[2], np.float64)
    emitted = 0
    late = 0
    # minute % n_ring is an integer division; events come mostly in the same minute,
    # so the last minute's ring position is kept (one for the look-ahead, one here).
    pf_minute = NO_FRAME
    pf_r = NO_FRAME % n_ring
    cur_minute = NO_FRAME
    cur_r = NO_FRAME % n_ring
    for j in range(start, min(start + PREFETCH_AHEAD, n)):
        m = ts_ms[j] // FRAME_MS
        if m != pf_minute:
            pf_minute = m
            pf_r = m % n_ring
        if slot[j] >= 0:
            _prefetch_rows(uintp(slot[j]), uintp(pf_r), state)
    i = start
    while i < n:
        j = i + PREFETCH_AHEAD
        if j < n:
            m = ts_ms[j] // FRAME_MS
            if m != pf_minute:
                pf_minute = m
                pf_r = m % n_ring
            if slot[j] >= 0:
                _prefetch_rows(uintp(slot[j]), uintp(pf_r), state)
        # Unsigned copies of the indices: Numba then skips the negative-index fix-up on
        # every array access (the driver passes only valid slots and partitions).
        e = uintp(i)
        p = uintp(part[e])
        t = ts_ms[e]
        minute = t // FRAME_MS
        if (minute + 1) * FRAME_MS <= part_max_ts[p] - lateness_ms:
            part_late[p] += 1
            late += 1
            i += 1
            continue
        if slot[e] < 0:  # WATERMARK_ONLY: the event moves its partition's watermark, no slot's state
            if t > part_max_ts[p]:
                part_max_ts[p] = t
            i += 1
            continue
        s = uintp(slot[e])
        if minute != cur_minute:
            cur_minute = minute
            cur_r = minute % n_ring
        r = uintp(cur_r)
        held = frame_minute[s, r]
        if held != minute and held != NO_FRAME:
            limit = _closing_limit(max(part_max_ts[p], t) - lateness_ms)
            if emitted + _count_closable(s, frame_minute, limit, False) > cap:
                return i, emitted, late
            emitted = _close_slot(s, limit, False, state, vals, out, emitted)
        if t > part_max_ts[p]:
            part_max_ts[p] = t
        slot_part[s] = p
        dirty[s] = 1
        frame_minute[s, r] = minute
        # state is indexed in place: a view (counters[s, r]) costs two atomic refcount updates
        # inter-arrival gap (in arrival order; a call older than the latest is not a gap)
        last = acct[s, AS_LAST_TS]
        if last != NO_TIME and t >= last:
            gap = (t - last) / 1000.0
            counters[s, r, GAP_COUNT] += 1
            floats[s, r, GAP_SUM] += gap
            floats[s, r, GAP_SQ] += gap * gap
        if last == NO_TIME or t > last:
            acct[s, AS_LAST_TS] = t
        # Flag, status and network counters without branches: these bits are close to
        # random per event, so branches on them mispredict.
        f = np.int64(flags[e])
        counters[s, r, CALLS] += 1
        _add_tokens(counters, token_carry, s, r, PROMPT_TOKENS, prompt_tokens[e])
        _add_tokens(counters, token_carry, s, r, COMPLETION_TOKENS, completion_tokens[e])
        _add_tokens(counters, token_carry, s, r, REASONING_TOKENS, reasoning_tokens[e])
        counters[s, r, REASONING_CALLS] += (f & FLAG_REASONING) != 0
        counters[s, r, LOGPROB_CALLS] += (f & FLAG_LOGPROBS) != 0
        counters[s, r, DEEP_LOGPROB_CALLS] += (f & FLAG_DEEP_LOGPROBS) != 0
        counters[s, r, LOGIT_BIAS_CALLS] += (f & FLAG_LOGIT_BIAS) != 0
        counters[s, r, MULTI_N_CALLS] += (f & FLAG_MULTI_N) != 0
        counters[s, r, STREAM_CALLS] += (f & FLAG_STREAM) != 0
        counters[s, r, WIDE_BIAS_CALLS] += (f & FLAG_WIDE_LOGIT_BIAS) != 0
        counters[s, r, TINY_OUTPUT_CALLS] += (f & FLAG_TINY_MAX_TOKENS) != 0
        counters[s, r, CLIENT_MISMATCH_CALLS] += (f & FLAG_CLIENT_MISMATCH) != 0
        counters[s, r, NEW_MODEL_CALLS] += (f & FLAG_NEW_MODEL) != 0
        st = status[e]
        counters[s, r, ERROR_CALLS] += st >= 400
        counters[s, r, RATE_LIMITED_CALLS] += st == 429
        nt = net[e]
        counters[s, r, ANON_CALLS] += (nt == NET_VPN) | (nt == NET_PROXY) | (nt == NET_TOR)
        counters[s, r, HOSTING_CALLS] += nt == NET_HOSTING
        # NaN (no temperature) adds +0.0: exact, as these sums start at +0.0 and so are never -0.0
        temp = np.float64(temperature[e])
        has_temp = not math.isnan(temp)
        tv = temp if has_temp else 0.0
        counters[s, r, TEMP_CALLS] += has_temp
        floats[s, r, TEMP_SUM] += tv
        floats[s, r, TEMP_SQ] += tv * tv
        counters[s, r, TEMP_ZERO_CALLS] += temp == 0.0
        h = prompt_hash[e]
        if h != 0:
            counters[s, r, HASHED_CALLS] += 1
            _hll_put(hll, s, r, _P0, h, HLL_PROMPT_BITS)
        _hll_put(hll, s, r, _P1, mix64(ip_key[e]), HLL_IP_BITS)
        if ua_hash[e] != 0:
            _hll_put(hll, s, r, _P2, mix64(ua_hash[e]), HLL_UA_BITS)
        if asn[e] != 0:
            _hll_put(hll, s, r, _P3, mix64(uint64(asn[e])), HLL_ASN_BITS)
        th = topic_hash[e]
        if th != 0:
            counters[s, r, uintp(TOPIC_BUCKET0) + th % uint64(TOPIC_BUCKETS)] += 1
            _hll_put(hll, s, r, _P4, mix64(th), HLL_TOPIC_BITS)
        sim = simhash[e]
        if sim != 0:
            for q in range(n_sim):
                prev = recent_sim[s, q]
                if prev != 0:
                    d = popcount64(sim ^ prev)
                    if 0 < d <= NEAR_DUP_BITS:
                        counters[s, r, NEAR_DUP_CALLS] += 1
                        break
            nxt = acct[s, AS_SIMHASH_NEXT]
            recent_sim[s, nxt] = sim
            nxt += 1
            acct[s, AS_SIMHASH_NEXT] = 0 if nxt == n_sim else nxt  # not %: a division per event
        i += 1
    return i, emitted, late


@njit(cache=True, nogil=True)
def _partition_limits(part_max_ts, lateness_ms):
    limits = np.empty(part_max_ts.shape[0], np.int64)
    for p in range(part_max_ts.shape[0]):
        limits[p] = _closing_limit(part_max_ts[p] - lateness_ms)
    return limits


@njit(cache=True, nogil=True)
def count_closed_frames(n_slots, frame_minute, slot_part, part_max_ts, lateness_ms, force):
    """How many frames ``collect_closed_frames`` would emit now (to size its output)."""
    limits = _partition_limits(part_max_ts, lateness_ms)
    total = 0
    for s in range(n_slots):
        total += _count_closable(s, frame_minute, limits[slot_part[s]], force)
    return total


# Kept apart from _prefetch_rows although both hint a slot's rows: the two folds tried (one helper
# over a row list, one per array) measured 8-65% slower on the bench's kernel_numba (commit 5208c19).
@njit(cache=True, nogil=True)
def _prefetch_closing(s, limit, force, state):
    """Hint the rows ``_close_slot`` will read and write for slot s, if it has a frame to close."""
    frame_minute, counters, token_carry, floats, hll, windows, acct = (
        state.frame_minute, state.counters, state.token_carry, state.floats, state.hll, state.windows, state.acct)
    any_frame = False
    for r in range(frame_minute.shape[1]):
        m = frame_minute[s, r]
        if m != NO_FRAME and (force or m < limit):
            any_frame = True
            _prefetch_span(counters, s * counters.strides[0] + r * counters.strides[1], counters.strides[1])
            _prefetch_span(token_carry, s * token_carry.strides[0] + r * token_carry.strides[1],
                           token_carry.strides[1])
            _prefetch_span(hll, s * hll.strides[0] + r * hll.strides[1], hll.strides[1])
            _prefetch_span(floats, s * floats.strides[0] + r * floats.strides[1], floats.strides[1])
    if any_frame:
        _prefetch_span(windows, s * windows.strides[0], windows.strides[0])
        _prefetch_span(acct, s * acct.strides[0], acct.strides[0])


@njit(cache=True, nogil=True)
def collect_closed_frames(n_slots, state, lateness_ms, force, out):
    """Emit every frame whose end is at or before its partition's watermark.

    ``force`` emits every open frame: the watermark jumps to +infinity at the end
    of bounded input (replay). Returns the number of rows written.
    """
    slot_part = state.slot_part
    limits = _partition_limits(state.part_max_ts, lateness_ms)
    vals = np.empty(state.windows.shape[2], np.float64)
    k = 0
    for s in range(min(CLOSE_AHEAD, n_slots)):
        _prefetch_closing(s, limits[slot_part[s]], force, state)
    for s in range(n_slots):
        ahead = s + CLOSE_AHEAD
        if ahead < n_slots:
            _prefetch_closing(ahead, limits[slot_part[ahead]], force, state)
        k = _close_slot(s, limits[slot_part[s]], force, state, vals, out, k)
    return k
