"""Numba JSON lexing for the event scanner: whitespace, strings, numbers, literals, skipping.

Strict RFC 8259, and strict about what the fast path may decide: every helper
returns -1 both for invalid JSON and for valid input whose meaning jiter (the
parser behind pydantic) might see differently (lone surrogate escapes, very long
numbers, huge exponents, deep nesting). The caller then falls back to pydantic,
which gives the authoritative answer and wording.

Compiled into ``json_scan``'s cache: after editing, see the note there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.kernels.raw_memory import load8

# Parsed JSON value types.
V_MISSING, V_STR, V_INT, V_FLOAT, V_TRUE, V_FALSE, V_NULL, V_OBJ, V_ARR = range(9)

MAX_DEPTH = 64  # deeper nesting falls back (jiter's own limit is higher; let it decide)
MAX_NUMBER_CHARS = 64  # longer number tokens fall back (jiter rejects very long ones)
MAX_EXP_DIGITS = 4

FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


def fnv1a(data: bytes) -> int:
    """FNV-1a 64 in Python (the kernels' key hash), for building lookup tables."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@njit(cache=True, nogil=True, inline="always")
def ws(buf, p, end):
    while p < end:
        c = buf[p]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        p += 1
    return p


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x22 * 0x0101010101010101)
_BACKSLASHES = np.uint64(0x5C * 0x0101010101010101)
_SPACES = np.uint64(0x20 * 0x0101010101010101)


@njit(cache=True, nogil=True, inline="always")
def plain_end(buf, p, end):
    """First position >= p holding '"', '\\', a control character or a non-ASCII byte (end if none).

    Eight bytes at a time (SWAR): most string content is plain ASCII.
    """
    while p + 8 <= end:
        w = load8(buf, p)
        special = (((w ^ _QUOTES) - _ONES) & ~(w ^ _QUOTES)) | (((w ^ _BACKSLASHES) - _ONES) & ~(w ^ _BACKSLASHES))
        special |= (w - _SPACES) & ~w
        if (special | w) & _HIGHS:
            break
        p += 8
    while p < end:
        c = buf[p]
        if c == 34 or c == 92 or c < 32 or c >= 128:
            return p
        p += 1
    return p


@njit(cache=True, nogil=True, inline="always")
def same_bytes(x, xs, y, ys, n):
    """x[xs:xs+n] == y[ys:ys+n] for uint8 arrays, a word at a time."""
    if n < 8:
        for j in range(n):  # noqa: SIM110 (no generator expressions in Numba)
            if x[xs + j] != y[ys + j]:
                return False
        return True
    j = 0
    while j + 8 <= n:
        if load8(x, xs + j) != load8(y, ys + j):
            return False
        j += 8
    return load8(x, xs + n - 8) == load8(y, ys + n - 8)


@njit(cache=True, nogil=True, inline="always")
def utf8_len(buf, p, end):
    """Length of the valid UTF-8 sequence at p (lead byte >= 0x80), 0 if invalid (overlong, surrogate, …)."""
    c = buf[p]
    if 0xC2 <= c <= 0xDF:
        n = 2
        lo, hi = 0x80, 0xBF
    elif 0xE0 <= c <= 0xEF:
        n = 3
        lo = 0xA0 if c == 0xE0 else 0x80
        hi = 0x9F if c == 0xED else 0xBF
    elif 0xF0 <= c <= 0xF4:
        n = 4
        lo = 0x90 if c == 0xF0 else 0x80
        hi = 0x8F if c == 0xF4 else 0xBF
    else:
        return 0
    if p + n > end:
        return 0
    c1 = buf[p + 1]
    if c1 < lo or c1 > hi:
        return 0
    for j in range(2, n):
        cj = buf[p + j]
        if cj < 0x80 or cj > 0xBF:
            return 0
    return n


@njit(cache=True, nogil=True, inline="always")
def hex4(buf, p, end):
    if p + 4 > end:
        return -1
    v = 0
    for j in range(4):
        c = buf[p + j]
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        else:
            return -1
        v = v * 16 + d
    return v


@njit(cache=True, nogil=True)
def put_utf8(out, q, cp):
    if cp < 0x80:
        out[q] = cp
        return q + 1
    if cp < 0x800:
        out[q] = 0xC0 | (cp >> 6)
        out[q + 1] = 0x80 | (cp & 0x3F)
        return q + 2
    if cp < 0x10000:
        out[q] = 0xE0 | (cp >> 12)
        out[q + 1] = 0x80 | ((cp >> 6) & 0x3F)
        out[q + 2] = 0x80 | (cp & 0x3F)
        return q + 3
    out[q] = 0xF0 | (cp >> 18)
    out[q + 1] = 0x80 | ((cp >> 12) & 0x3F)
    out[q + 2] = 0x80 | ((cp >> 6) & 0x3F)
    out[q + 3] = 0x80 | (cp & 0x3F)
    return q + 4


@njit(cache=True, nogil=True)
def string(buf, nb, p, end, scratch, sp, copy):
    """Scan a JSON string whose opening quote is at p-1.

    Returns (p after the closing quote or -1, start, end, nchars, has_nul, sp). Without
    escapes the span is in ``buf``; with escapes and ``copy`` the unescaped bytes are
    written to ``scratch`` at ``sp`` and the span is ``nb + offset`` (the arena; nb is the
    buffer's size).
    Lone surrogate escapes return -1: jiter rejects them, so the caller falls back.
    """
    s = p
    nch = 0
    while p < end:
        q = plain_end(buf, p, end)  # a run of plain ASCII: one character per byte
        nch += q - p
        p = q
        if p >= end:
            break
        c = buf[p]
        if c == 34:
            return p + 1, s, p, nch, False, sp
        if c == 92:
            break
        if c < 32:
            return -1, 0, 0, 0, False, sp
        k = utf8_len(buf, p, end)
        if k == 0:
            return -1, 0, 0, 0, False, sp
        p += k
        nch += 1
    if p >= end:
        return -1, 0, 0, 0, False, sp
    # Escapes: copy what was scanned, then unescape the rest.
    q0 = sp
    q = sp
    if copy:
        for j in range(s, p):
            scratch[q] = buf[j]
            q += 1
    has_nul = False
    while p < end:
        c = buf[p]
        if c == 34:
            if copy:
                return p + 1, nb + q0, nb + q, nch, has_nul, q
            return p + 1, 0, 0, nch, has_nul, sp
        if c == 92:
            if p + 1 >= end:
                return -1, 0, 0, 0, False, sp
            d = buf[p + 1]
            if d == 117:  # \uXXXX
                cp = hex4(buf, p + 2, end)
                if cp < 0:
                    return -1, 0, 0, 0, False, sp
                p += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if p + 1 >= end or buf[p] != 92 or buf[p + 1] != 117:
                        return -1, 0, 0, 0, False, sp
                    low = hex4(buf, p + 2, end)
                    if low < 0xDC00 or low > 0xDFFF:
                        return -1, 0, 0, 0, False, sp
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                    p += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return -1, 0, 0, 0, False, sp
                if cp == 0:
                    has_nul = True
                if copy:
                    q = put_utf8(scratch, q, cp)
                nch += 1
                continue
            if d == 34 or d == 92 or d == 47:
                out = d
            elif d == 98:
                out = 8
            elif d == 102:
                out = 12
            elif d == 110:
                out = 10
            elif d == 114:
                out = 13
            elif d == 116:
                out = 9
            else:
                return -1, 0, 0, 0, False, sp
            if copy:
                scratch[q] = out
                q += 1
            nch += 1
            p += 2
            continue
        if c < 32:
            return -1, 0, 0, 0, False, sp
        k = 1
        if c >= 128:
            k = utf8_len(buf, p, end)
            if k == 0:
                return -1, 0, 0, 0, False, sp
        if copy:
            for j in range(k):
                scratch[q] = buf[p + j]
                q += 1
        p += k
        nch += 1
    return -1, 0, 0, 0, False, sp


@njit(cache=True, nogil=True, inline="always")
def number(buf, p, end):
    """Scan a JSON number at p.

    Returns (p after it or -1, is_int, negative, mantissa, significant digits, e10):
    value = ±mantissa * 10**e10 (the first 18 significant digits). -1 also for tokens the fast path
    does not judge (longer than MAX_NUMBER_CHARS, huge exponents): the caller falls back.
    """
    start = p
    neg = False
    if buf[p] == 45:
        neg = True
        p += 1
        if p >= end:
            return -1, False, False, 0, 0, 0
    c = buf[p]
    mant = 0
    sig = 0
    e10 = 0
    if c == 48:
        p += 1
        if p < end and 48 <= buf[p] <= 57:
            return -1, False, False, 0, 0, 0  # leading zero
    elif 49 <= c <= 57:
        while p < end and 48 <= buf[p] <= 57:
            if sig < 18:
                mant = mant * 10 + (buf[p] - 48)
            else:
                e10 += 1
            sig += 1
            p += 1
    else:
        return -1, False, False, 0, 0, 0
    is_int = True
    if p < end and buf[p] == 46:
        is_int = False
        p += 1
        if p >= end or not 48 <= buf[p] <= 57:
            return -1, False, False, 0, 0, 0
        while p < end and 48 <= buf[p] <= 57:
            d = buf[p] - 48
            if sig == 0 and d == 0:
                e10 -= 1  # leading zeros of the fraction are not significant
            elif sig < 18:
                mant = mant * 10 + d
                sig += 1
                e10 -= 1
            else:
                sig += 1
            p += 1
    if p < end and (buf[p] == 101 or buf[p] == 69):
        is_int = False
        p += 1
        eneg = False
        if p < end and (buf[p] == 43 or buf[p] == 45):
            eneg = buf[p] == 45
            p += 1
        if p >= end or not 48 <= buf[p] <= 57:
            return -1, False, False, 0, 0, 0
        ev = 0
        nd = 0
        while p < end and 48 <= buf[p] <= 57:
            ev = ev * 10 + (buf[p] - 48)
            nd += 1
            p += 1
            if nd > MAX_EXP_DIGITS:
                return -1, False, False, 0, 0, 0
        e10 += -ev if eneg else ev
    if p - start > MAX_NUMBER_CHARS:
        return -1, False, False, 0, 0, 0
    return p, is_int, neg, mant, sig, e10


@njit(cache=True, nogil=True, inline="always")
def literal(buf, p, end):
    """true / false / null at p: (p after it or -1, value type)."""
    c = buf[p]
    if c == 116 and p + 4 <= end and buf[p + 1] == 114 and buf[p + 2] == 117 and buf[p + 3] == 101:
        return p + 4, V_TRUE
    if (c == 102 and p + 5 <= end and buf[p + 1] == 97 and buf[p + 2] == 108 and buf[p + 3] == 115
            and buf[p + 4] == 101):
        return p + 5, V_FALSE
    if c == 110 and p + 4 <= end and buf[p + 1] == 117 and buf[p + 2] == 108 and buf[p + 3] == 108:
        return p + 4, V_NULL
    return -1, V_MISSING


@njit(cache=True, nogil=True)
def _key_end(buf, p, end, scratch):
    """A key string (opening quote at p) then ':'; returns p after the colon or -1."""
    if p >= end or buf[p] != 34:
        return -1
    p = string(buf, 0, p + 1, end, scratch, 0, False)[0]
    if p < 0:
        return -1
    p = ws(buf, p, end)
    if p >= end or buf[p] != 58:
        return -1
    return p + 1


@njit(cache=True, nogil=True)
def _scalar_end(buf, p, end, scratch):
    c = buf[p]
    if c == 34:
        return string(buf, 0, p + 1, end, scratch, 0, False)[0]
    if c == 45 or 48 <= c <= 57:
        return number(buf, p, end)[0]
    return literal(buf, p, end)[0]


@njit(cache=True, nogil=True)
def skip_value(buf, p, end, scratch, stack):
    """Validate and skip any JSON value at p (iteratively, up to MAX_DEPTH); p after it or -1."""
    depth = 0
    while True:
        p = ws(buf, p, end)
        if p >= end:
            return -1
        c = buf[p]
        if c == 123 or c == 91:
            if depth >= MAX_DEPTH:
                return -1
            p = ws(buf, p + 1, end)
            if p >= end:
                return -1
            if buf[p] == c + 2:  # {} or []
                p += 1
            else:
                stack[depth] = c
                depth += 1
                if c == 123:
                    p = _key_end(buf, p, end, scratch)
                    if p < 0:
                        return -1
                continue
        else:
            p = _scalar_end(buf, p, end, scratch)
            if p < 0:
                return -1
        # A value ended at p: close containers or go on to the next element.
        while True:
            if depth == 0:
                return p
            p = ws(buf, p, end)
            if p >= end:
                return -1
            c = buf[p]
            top = stack[depth - 1]
            if c == 44:
                p += 1
                if top == 123:
                    p = _key_end(buf, ws(buf, p, end), end, scratch)
                    if p < 0:
                        return -1
                break
            if c == top + 2:
                depth -= 1
                p += 1
                continue
            return -1
