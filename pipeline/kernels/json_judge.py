"""Numba judges of one contract field's JSON value, exactly as the pydantic model rules.

Each returns (outcome, error code, value): ``R_OK`` with the value, ``R_ERR`` with
the code pydantic's first error for it would carry, ``R_UNSURE`` when only pydantic
can tell (the message falls back), ``R_PENDING`` when a cheap Python check decides
(IPv6 addresses, floats the exact fast path cannot round) and ``R_DERIVE`` for a
valid ``prompt_text`` (Python may have to derive the fields of ``DERIVED`` from it).

Compiled into ``json_scan``'s cache: after editing, see the note there.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.kernels.event_spec import (
    DEFAULT,
    E_BOOL_TYPE,
    E_FLOAT_TYPE,
    E_GE,
    E_INT_TYPE,
    E_IP,
    E_LE,
    E_LITERAL,
    E_NONE,
    E_PATTERN,
    E_STR_TYPE,
    E_TOO_LONG,
    E_TOO_SHORT,
    E_TS_BOOL,
    E_TS_RANGE,
    E_TS_TYPE,
    HI,
    K_BOOL,
    K_COUNTRY,
    K_FLOAT,
    K_HEX,
    K_INT,
    K_IP,
    K_NET,
    K_STR,
    K_TEXT,
    K_TS,
    K_VERSION,
    KIND,
    LO,
    NET_BYTES,
    NET_OFFSETS,
    NULLABLE,
    R_DERIVE,
    R_ERR,
    R_OK,
    R_PENDING,
    R_UNSURE,
    TS_MAX_MS,
    TS_MIN_MS,
)
from pipeline.kernels.json_lex import V_FALSE, V_NULL, V_TRUE

_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
# Powers of ten exact in float64: Clinger's fast path (one correctly rounded operation).
_POW10 = np.array([10.0**i for i in range(23)], np.float64)


@njit(cache=True, nogil=True)
def _digits(arr, p, k):
    v = 0
    for j in range(k):
        c = arr[p + j]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (c - 48)
    return v


@njit(cache=True, nogil=True)
def _days_from_civil(y, m, d):
    y -= 1 if m <= 2 else 0
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, nogil=True)
def rfc3339_ms(arr, s, e):
    """(ok, epoch ms) for ``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)``; not ok for any other form.

    Same value as ``schemas.event._rfc3339_to_ms`` (floor to the millisecond). Other
    forms that ``datetime.fromisoformat`` accepts or rejects are left to it.
    """
    n = e - s
    if n < 20 or n > 35:
        return False, 0
    if arr[s + 4] != 45 or arr[s + 7] != 45 or arr[s + 10] != 84 or arr[s + 13] != 58 or arr[s + 16] != 58:
        return False, 0
    y = _digits(arr, s, 4)
    mo = _digits(arr, s + 5, 2)
    d = _digits(arr, s + 8, 2)
    hh = _digits(arr, s + 11, 2)
    mi = _digits(arr, s + 14, 2)
    ss = _digits(arr, s + 17, 2)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59 or ss < 0 or ss > 59:
        return False, 0
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    if d > _DAYS_IN_MONTH[mo - 1] + (1 if mo == 2 and leap else 0):
        return False, 0
    p = s + 19
    frac = 0
    if arr[p] == 46:
        p += 1
        k = 0
        while p < e and 48 <= arr[p] <= 57:
            if k < 3:
                frac = frac * 10 + (arr[p] - 48)
            k += 1
            p += 1
        if k == 0 or k > 9:
            return False, 0
        while k < 3:
            frac *= 10
            k += 1
    if p >= e:
        return False, 0
    c = arr[p]
    offset = 0
    if c == 90:
        if p + 1 != e:
            return False, 0
    elif c == 43 or c == 45:
        if p + 6 != e or arr[p + 3] != 58:
            return False, 0
        oh = _digits(arr, p + 1, 2)
        om = _digits(arr, p + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return False, 0
        offset = (oh * 60 + om) * 60
        if c == 45:
            offset = -offset
    else:
        return False, 0
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset
    return True, secs * 1000 + frac


@njit(cache=True, nogil=True)
def ipv4_key(arr, s, e):
    """The IPv4 integer of a dotted quad exactly as ``ipaddress`` accepts it (no leading zeros), else -1."""
    p = s
    key = 0
    for octet in range(4):
        if octet > 0:
            if p >= e or arr[p] != 46:
                return -1
            p += 1
        first = p
        v = 0
        while p < e and p - first < 3 and 48 <= arr[p] <= 57:
            v = v * 10 + (arr[p] - 48)
            p += 1
        k = p - first
        if k == 0 or v > 255 or (k > 1 and arr[first] == 48):
            return -1
        key = key * 256 + v
    if p != e:
        return -1
    return key


@njit(cache=True, nogil=True)
def judge_string(f, arr, s, e, nch, has_nul):
    """A string value of field f (bytes arr[s:e], unescaped): (outcome, error code, int value, uint value)."""
    kind = KIND[f]
    none = np.uint64(0)
    if kind == K_STR:
        if has_nul:
            return R_UNSURE, E_NONE, 0, none  # NUL separates strings in intern_strings' blob
        if nch < LO[f]:
            return R_ERR, E_TOO_SHORT, 0, none
        if nch > HI[f]:
            return R_ERR, E_TOO_LONG, 0, none
        return R_OK, E_NONE, 0, none
    if kind == K_TS:
        ok, ms = rfc3339_ms(arr, s, e)
        if not ok:
            return R_UNSURE, E_NONE, 0, none
        if ms < TS_MIN_MS or ms >= TS_MAX_MS:
            return R_ERR, E_TS_RANGE, 0, none
        return R_OK, E_NONE, ms, none
    if kind == K_IP:
        if has_nul:
            return R_UNSURE, E_NONE, 0, none
        for j in range(s, e):
            if arr[j] == 58:  # ':' → IPv6 (or invalid): ipaddress decides
                return R_PENDING, E_NONE, 0, none
        key = ipv4_key(arr, s, e)
        if key < 0:
            return R_ERR, E_IP, 0, none
        return R_OK, E_NONE, 0, np.uint64(key)
    if kind == K_NET:
        for t in range(NET_OFFSETS.size - 1):
            a, b = NET_OFFSETS[t], NET_OFFSETS[t + 1]
            if b - a == e - s:
                same = True
                for j in range(b - a):
                    if NET_BYTES[a + j] != arr[s + j]:
                        same = False
                        break
                if same:
                    return R_OK, E_NONE, t, none
        return R_ERR, E_LITERAL, 0, none
    if kind == K_COUNTRY:
        if e - s == 2 and 65 <= arr[s] <= 90 and 65 <= arr[s + 1] <= 90:
            return R_OK, E_NONE, 0, none
        return R_ERR, E_PATTERN, 0, none
    if kind == K_HEX:
        if e - s != 16:
            return R_ERR, E_PATTERN, 0, none
        h = np.uint64(0)
        for j in range(s, e):
            c = arr[j]
            if 48 <= c <= 57:
                d = c - 48
            elif 97 <= c <= 102:
                d = c - 87
            else:
                return R_ERR, E_PATTERN, 0, none
            h = (h << np.uint64(4)) | np.uint64(d)
        return R_OK, E_NONE, 0, h
    if kind == K_TEXT:
        if nch > HI[f]:
            return R_ERR, E_TOO_LONG, 0, none
        return R_DERIVE, E_NONE, 0, none  # valid; missing derived fields come from it (Python)
    if kind == K_VERSION:
        return R_ERR, E_LITERAL, 0, none
    if kind == K_INT:
        return R_ERR, E_INT_TYPE, 0, none
    if kind == K_BOOL:
        return R_ERR, E_BOOL_TYPE, 0, none
    return R_ERR, E_FLOAT_TYPE, 0, none  # K_FLOAT


@njit(cache=True, nogil=True, inline="always")
def _exact_float(neg, mant, sig, e10):
    """(ok, value) when one correctly rounded operation gives the value (Clinger's fast path)."""
    if mant == 0:
        return True, -0.0 if neg else 0.0
    if sig > 15 or e10 < -22 or e10 > 22:
        return False, 0.0
    v = float(mant)
    v = v * _POW10[e10] if e10 >= 0 else v / _POW10[-e10]
    return True, -v if neg else v


@njit(cache=True, nogil=True, inline="always")
def judge_number(f, is_int, neg, mant, sig, e10):
    """A number value of field f: (outcome, error code, int value, float value)."""
    kind = KIND[f]
    if is_int and sig > 18:
        return R_UNSURE, E_NONE, 0, 0.0  # beyond int64: let pydantic judge the big integer
    value = -mant if neg else mant
    if kind == K_INT:
        if not is_int:
            return R_ERR, E_INT_TYPE, 0, 0.0  # strict: 1.0 is not an integer
        if value < LO[f]:
            return R_ERR, E_GE, 0, 0.0
        if value > HI[f]:
            return R_ERR, E_LE, 0, 0.0
        return R_OK, E_NONE, value, 0.0
    if kind == K_FLOAT:
        if is_int and sig > 15:
            return R_UNSURE, E_NONE, 0, 0.0
        ok, x = _exact_float(neg and not (is_int and mant == 0), mant, sig, e10)  # the integer -0 is 0.0
        if not ok:
            return R_PENDING, E_NONE, 0, 0.0  # Python's float() rounds it exactly as jiter does
        if x < LO[f]:
            return R_ERR, E_GE, 0, 0.0
        if x > HI[f]:
            return R_ERR, E_LE, 0, 0.0
        return R_OK, E_NONE, 0, x
    if kind == K_TS:
        if not is_int:
            return R_ERR, E_TS_TYPE, 0, 0.0
        if value < TS_MIN_MS or value >= TS_MAX_MS:
            return R_ERR, E_TS_RANGE, 0, 0.0
        return R_OK, E_NONE, value, 0.0
    if kind == K_VERSION:
        # Literal[1] accepts 1, 1.0, 10e-1 (and true): equal to 1 as a number.
        ok, x = _exact_float(neg, mant, sig, e10)
        if not ok:
            return R_UNSURE, E_NONE, 0, 0.0
        if x != 1.0:
            return R_ERR, E_LITERAL, 0, 0.0
        return R_OK, E_NONE, 1, 0.0
    if kind == K_NET:
        return R_ERR, E_LITERAL, 0, 0.0
    if kind == K_BOOL:
        return R_ERR, E_BOOL_TYPE, 0, 0.0
    return R_ERR, E_STR_TYPE, 0, 0.0  # string kinds


@njit(cache=True, nogil=True, inline="always")
def judge_other(f, vt):
    """true / false / null / object / array for field f: (outcome, error code, int value)."""
    kind = KIND[f]
    if vt == V_NULL and NULLABLE[f]:
        return R_OK, E_NONE, DEFAULT[f]
    if kind == K_BOOL:
        if vt == V_TRUE:
            return R_OK, E_NONE, 1
        if vt == V_FALSE:
            return R_OK, E_NONE, 0
        return R_ERR, E_BOOL_TYPE, 0
    if kind == K_TS:
        return R_ERR, (E_TS_BOOL if vt in (V_TRUE, V_FALSE) else E_TS_TYPE), 0
    if kind == K_VERSION:
        if vt == V_TRUE:  # Literal[1] accepts true (True == 1)
            return R_OK, E_NONE, 1
        return R_ERR, E_LITERAL, 0
    if kind == K_NET:
        return R_ERR, E_LITERAL, 0
    if kind == K_INT:
        return R_ERR, E_INT_TYPE, 0
    if kind == K_FLOAT:
        return R_ERR, E_FLOAT_TYPE, 0
    return R_ERR, E_STR_TYPE, 0
