"""Numba kernels: per-account one-minute frames in event time.

Pure functions over NumPy arrays; they mutate only the state arrays they are given
and write results into output arrays the caller allocates. No Faust, no I/O.

Event-time rules (Flink's bounded-out-of-orderness watermark, per Kafka partition):
- Each partition's watermark is its largest event time seen minus the allowed
  lateness. An account lives in one partition (the message key is the account),
  so its frames depend only on that partition's order, which Kafka keeps: the
  result is the same however the input is cut into batches or partitions are
  interleaved.
- An event whose minute frame ended at or before its partition's watermark is
  late: it is counted per partition and not added to any frame.
- A frame closes once its end is at or before the watermark; closed frames are
  emitted by ``collect_closed_frames`` (or, at the end of bounded input, by
  forcing) and their slot is cleared.

State per account slot ``s`` and ring position ``r`` (``r = minute % R``):
``frame_minute[s, r]`` (``NO_FRAME`` when empty), ``counters[s, r, :]``,
``hll_prompt[s, r, :]``, ``hll_ip[s, r, :]``; ``slot_part[s]`` is the partition
the account was last seen on; ``dirty[s]`` is set whenever slot ``s`` changes
(the checkpoint writes only dirty slots, then clears the flags).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.kernels.hll import hll_add, hll_estimate, mix64
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
    NO_FRAME,
    PROMPT_TOKENS,
    RATE_LIMITED_CALLS,
    REASONING_CALLS,
    REASONING_TOKENS,
)


@njit(cache=True, nogil=True)
def _emit_frame(
    s: int,
    r: int,
    frame_minute: np.ndarray,
    counters: np.ndarray,
    hll_prompt: np.ndarray,
    hll_ip: np.ndarray,
    out_slot: np.ndarray,
    out_minute: np.ndarray,
    out_counters: np.ndarray,
    out_distinct: np.ndarray,
    k: int,
) -> None:
    """Copy frame (s, r) to output row k with its distinct-count estimates, then clear it."""
    out_slot[k] = s
    out_minute[k] = frame_minute[s, r]
    for c in range(counters.shape[2]):
        out_counters[k, c] = counters[s, r, c]
        counters[s, r, c] = 0
    out_distinct[k, 0] = hll_estimate(hll_prompt[s, r])
    out_distinct[k, 1] = hll_estimate(hll_ip[s, r])
    hll_prompt[s, r, :] = 0
    hll_ip[s, r, :] = 0
    frame_minute[s, r] = NO_FRAME


@njit(cache=True, nogil=True)
def ingest_events(
    slot: np.ndarray,
    part: np.ndarray,
    ts_ms: np.ndarray,
    prompt_tokens: np.ndarray,
    completion_tokens: np.ndarray,
    reasoning_tokens: np.ndarray,
    prompt_hash: np.ndarray,
    ip_key: np.ndarray,
    status: np.ndarray,
    flags: np.ndarray,
    frame_minute: np.ndarray,
    counters: np.ndarray,
    hll_prompt: np.ndarray,
    hll_ip: np.ndarray,
    slot_part: np.ndarray,
    dirty: np.ndarray,
    part_max_ts: np.ndarray,
    part_late: np.ndarray,
    lateness_ms: int,
    out_slot: np.ndarray,
    out_minute: np.ndarray,
    out_counters: np.ndarray,
    out_distinct: np.ndarray,
) -> tuple[int, int]:
    """Fold a batch of events (in arrival order) into the frames.

    A frame pushed out of its ring position by a newer minute is already closed
    (see ``layout.ring_size``) and is written to the output arrays, which must
    have room for one row per event. Returns (rows emitted, late events).
    """
    n_ring = frame_minute.shape[1]
    emitted = 0
    late = 0
    for i in range(slot.shape[0]):
        s = slot[i]
        p = part[i]
        t = ts_ms[i]
        minute = t // FRAME_MS
        if (minute + 1) * FRAME_MS <= part_max_ts[p] - lateness_ms:
            part_late[p] += 1
            late += 1
            continue
        if t > part_max_ts[p]:
            part_max_ts[p] = t
        slot_part[s] = p
        dirty[s] = 1
        r = minute % n_ring
        if frame_minute[s, r] != minute:
            if frame_minute[s, r] != NO_FRAME:
                _emit_frame(
                    s, r, frame_minute, counters, hll_prompt, hll_ip,
                    out_slot, out_minute, out_counters, out_distinct, emitted,
                )
                emitted += 1
            frame_minute[s, r] = minute
        f = flags[i]
        counters[s, r, CALLS] += 1
        counters[s, r, PROMPT_TOKENS] += prompt_tokens[i]
        counters[s, r, COMPLETION_TOKENS] += completion_tokens[i]
        counters[s, r, REASONING_TOKENS] += reasoning_tokens[i]
        if f & FLAG_REASONING:
            counters[s, r, REASONING_CALLS] += 1
        if f & FLAG_LOGPROBS:
            counters[s, r, LOGPROB_CALLS] += 1
        if f & FLAG_DEEP_LOGPROBS:
            counters[s, r, DEEP_LOGPROB_CALLS] += 1
        if f & FLAG_LOGIT_BIAS:
            counters[s, r, LOGIT_BIAS_CALLS] += 1
        if f & FLAG_MULTI_N:
            counters[s, r, MULTI_N_CALLS] += 1
        st = status[i]
        if st >= 400:
            counters[s, r, ERROR_CALLS] += 1
            if st == 429:
                counters[s, r, RATE_LIMITED_CALLS] += 1
        h = prompt_hash[i]
        if h != 0:
            counters[s, r, HASHED_CALLS] += 1
            hll_add(hll_prompt[s, r], h, HLL_PROMPT_BITS)
        hll_add(hll_ip[s, r], mix64(ip_key[i]), HLL_IP_BITS)
    return emitted, late


@njit(cache=True, nogil=True)
def count_closed_frames(
    n_slots: int,
    frame_minute: np.ndarray,
    slot_part: np.ndarray,
    part_max_ts: np.ndarray,
    lateness_ms: int,
    force: bool,
) -> int:
    """How many frames ``collect_closed_frames`` would emit now (to size its output)."""
    total = 0
    for s in range(n_slots):
        wm = part_max_ts[slot_part[s]] - lateness_ms
        for r in range(frame_minute.shape[1]):
            m = frame_minute[s, r]
            if m != NO_FRAME and (force or (m + 1) * FRAME_MS <= wm):
                total += 1
    return total


@njit(cache=True, nogil=True)
def collect_closed_frames(
    n_slots: int,
    frame_minute: np.ndarray,
    counters: np.ndarray,
    hll_prompt: np.ndarray,
    hll_ip: np.ndarray,
    slot_part: np.ndarray,
    dirty: np.ndarray,
    part_max_ts: np.ndarray,
    lateness_ms: int,
    force: bool,
    out_slot: np.ndarray,
    out_minute: np.ndarray,
    out_counters: np.ndarray,
    out_distinct: np.ndarray,
) -> int:
    """Emit every frame whose end is at or before its partition's watermark.

    ``force`` emits every open frame: the watermark jumps to +infinity at the end
    of bounded input (replay). Returns the number of rows written.
    """
    k = 0
    for s in range(n_slots):
        wm = part_max_ts[slot_part[s]] - lateness_ms
        for r in range(frame_minute.shape[1]):
            m = frame_minute[s, r]
            if m != NO_FRAME and (force or (m + 1) * FRAME_MS <= wm):
                _emit_frame(
                    s, r, frame_minute, counters, hll_prompt, hll_ip,
                    out_slot, out_minute, out_counters, out_distinct, k,
                )
                dirty[s] = 1
                k += 1
    return k
