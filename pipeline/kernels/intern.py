"""Numba string interning inside the scan: each distinct string of a batch is stored once.

Each output string is looked up, while its message is in cache, in an open-addressing table (hash
verified byte by byte, so a collision never merges two values) and gets a distinct id per row;
distinct values go to one NUL-separated arena that Python decodes and splits in two C calls. Id 0 is
the empty string (also "absent"). Compiled into ``json_scan``'s cache: after editing, see the note there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.kernels.json_lex import same_bytes
from pipeline.kernels.raw_memory import load8

EMPTY_ID = 0
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)


@njit(cache=True, nogil=True, inline="always")
def _mix(h, w):
    h = (h ^ w) * _K2
    return h ^ (h >> np.uint64(31))


@njit(cache=True, nogil=True, inline="always")
def span_hash(src, s, e):
    """64-bit hash of src[s:e], a word at a time (the last word may overlap the previous one)."""
    n = e - s
    h = np.uint64(n) * _K1
    if n < 8:
        w = np.uint64(0)
        for j in range(n):
            w = (w << np.uint64(8)) | np.uint64(src[s + j])
        return _mix(h, w)
    p = s
    while p + 8 <= e:
        h = _mix(h, load8(src, p))
        p += 8
    if p < e:
        h = _mix(h, load8(src, e - 8))
    return h


@njit(cache=True, nogil=True, inline="always")
def _slot(h, mask):
    return np.int64((h ^ (h >> np.uint64(29))) & np.uint64(mask))


@njit(cache=True, nogil=True, inline="always")
def append(src, s, e, arena, q, d_start, d_len, k):
    """Store src[s:e] as distinct value k (after a NUL separator); returns the new arena end."""
    arena[q] = 0
    q += 1
    d_start[k] = q
    d_len[k] = e - s
    for j in range(s, e):
        arena[q] = src[j]
        q += 1
    return q


@njit(cache=True, nogil=True, inline="always")
def find_or_add(src, s, e, h, table, mask, d_hash, d_start, d_len, arena, q, k):
    """(id, arena end, next id) of the string src[s:e] with hash h, adding it when new (table size mask + 1)."""
    slot = _slot(h, mask)
    n = e - s
    while True:
        d = table[slot]
        if d < 0:
            table[slot] = k
            d_hash[k] = h
            q = append(src, s, e, arena, q, d_start, d_len, k)
            return k, q, k + 1
        if d_hash[d] == h and d_len[d] == n and same_bytes(arena, d_start[d], src, s, n):
            return d, q, k
        slot = (slot + 1) & mask


@njit(cache=True, nogil=True)
def grown(table, d_hash):
    """The table at twice the size, holding the same ids."""
    size = table.size * 2
    out = np.full(size, -1, np.int32)
    mask = size - 1
    for t in range(table.size):
        d = table[t]
        if d >= 0:
            slot = _slot(d_hash[d], mask)
            while out[slot] >= 0:
                slot = (slot + 1) & mask
            out[slot] = d
    return out
