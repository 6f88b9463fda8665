"""Numba scanner for batches of one-JSON-event-per-message values (the event contract).

Pure functions over arrays: the batch is one uint8 buffer with per-message start
and length; no Python object is made per event. Each message is parsed as a flat
JSON object, every contract field is judged exactly as the pydantic model
(``schemas.event.ApiCallEvent``, strict mode) judges it, and the message gets a
status:

- ``S_OK``: valid; its values are in the output columns.
- ``S_REJECT``: invalid; the first failing field in model order (pydantic's error
  order), its error code and the number of failing fields.
- ``S_FUTURE``: valid but stamped later than ``max_ts_ms``.
- ``S_PENDING``: valid if a value only Python can judge cheaply is valid (an IPv6
  ``client_ip``, a float the exact fast path cannot round); ``PEND_*`` bits say which.
- ``S_OVERSIZED``: longer than ``max_bytes``.
- ``S_FALLBACK``: anything not decided with certainty here (invalid JSON, escaped
  keys, NaN/Infinity, long numbers, unusual timestamp forms, ``prompt_text`` whose
  hashes must be derived, …): the caller runs the pydantic path on it.

The rule is: decide only what is certain, fall back on everything else. The
differential tests compare this path with pydantic on generated input.

Strings are returned as spans into an "arena": positions below ``buf.size`` are in
``buf``; escaped strings are unescaped into ``scratch`` and their positions are
``buf.size + offset``. ``intern_strings`` turns spans into distinct UTF-8 blobs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- the contract's fields, in model order (pydantic reports errors in this order) ----
FIELD_NAMES: tuple[str, ...] = (
    "schema_version", "event_id", "ts", "account_id", "api_key_id", "client_ip", "asn", "network_type",
    "country", "user_agent", "endpoint", "model", "status", "latency_ms", "prompt_tokens",
    "completion_tokens", "reasoning_tokens", "prompt_hash", "prompt_simhash", "prompt_text", "topic",
    "elicits_reasoning", "temperature", "top_p", "n", "max_tokens", "logprobs", "top_logprobs",
    "logit_bias_count", "stream", "payment_fingerprint",
)  # fmt: skip
NF = len(FIELD_NAMES)
(F_SCHEMA_VERSION, F_EVENT_ID, F_TS, F_ACCOUNT_ID, F_API_KEY_ID, F_CLIENT_IP, F_ASN, F_NETWORK_TYPE,
 F_COUNTRY, F_USER_AGENT, F_ENDPOINT, F_MODEL, F_STATUS, F_LATENCY_MS, F_PROMPT_TOKENS,
 F_COMPLETION_TOKENS, F_REASONING_TOKENS, F_PROMPT_HASH, F_PROMPT_SIMHASH, F_PROMPT_TEXT, F_TOPIC,
 F_ELICITS_REASONING, F_TEMPERATURE, F_TOP_P, F_N, F_MAX_TOKENS, F_LOGPROBS, F_TOP_LOGPROBS,
 F_LOGIT_BIAS_COUNT, F_STREAM, F_PAYMENT_FINGERPRINT) = range(NF)  # fmt: skip

# Field kinds: how a value is judged.
K_VERSION, K_TS, K_STR, K_IP, K_INT, K_NET, K_COUNTRY, K_HEX, K_TEXT, K_BOOL, K_FLOAT = range(11)
U32 = 2**32 - 1
U16 = 2**16 - 1
TS_MIN_MS = 946_684_800_000  # schemas.event.TS_MIN_MS (a test checks they agree)
TS_MAX_MS = 4_102_444_800_000

# Per field: kind, required, nullable (Optional), lower/upper bound (ints: value;
# strings: length in characters), float bounds, and the output value when the
# field is absent or null (the DecodedBatch conventions: ``asn or 0``, top_logprobs -1).
_SPEC = (
    # name                  kind       req    null   lo     hi      default
    ("schema_version",      K_VERSION, False, False, 1,     1,      1),
    ("event_id",            K_STR,     True,  False, 1,     64,     0),
    ("ts",                  K_TS,      True,  False, 0,     0,      0),
    ("account_id",          K_STR,     True,  False, 1,     128,    0),
    ("api_key_id",          K_STR,     True,  False, 1,     128,    0),
    ("client_ip",           K_IP,      True,  False, 0,     0,      0),
    ("asn",                 K_INT,     False, True,  0,     U32,    0),
    ("network_type",        K_NET,     False, False, 0,     0,      7),
    ("country",             K_COUNTRY, False, True,  0,     0,      0),
    ("user_agent",          K_STR,     False, True,  0,     512,    0),
    ("endpoint",            K_STR,     True,  False, 1,     256,    0),
    ("model",               K_STR,     True,  False, 1,     128,    0),
    ("status",              K_INT,     True,  False, 100,   599,    0),
    ("latency_ms",          K_INT,     False, True,  0,     U32,    0),
    ("prompt_tokens",       K_INT,     True,  False, 0,     U32,    0),
    ("completion_tokens",   K_INT,     True,  False, 0,     U32,    0),
    ("reasoning_tokens",    K_INT,     False, False, 0,     U32,    0),
    ("prompt_hash",         K_HEX,     False, True,  0,     0,      0),
    ("prompt_simhash",      K_HEX,     False, True,  0,     0,      0),
    ("prompt_text",         K_TEXT,    False, True,  0,     32_768, 0),
    ("topic",               K_STR,     False, True,  0,     64,     0),
    ("elicits_reasoning",   K_BOOL,    False, False, 0,     0,      0),
    ("temperature",         K_FLOAT,   False, True,  0,     2,      0),
    ("top_p",               K_FLOAT,   False, True,  0,     1,      0),
    ("n",                   K_INT,     False, False, 1,     U16,    1),
    ("max_tokens",          K_INT,     False, True,  1,     U32,    0),
    ("logprobs",            K_BOOL,    False, False, 0,     0,      0),
    ("top_logprobs",        K_INT,     False, True,  0,     20,     -1),
    ("logit_bias_count",    K_INT,     False, False, 0,     U16,    0),
    ("stream",              K_BOOL,    False, False, 0,     0,      0),
    ("payment_fingerprint", K_STR,     False, True,  0,     128,    0),
)  # fmt: skip
assert tuple(s[0] for s in _SPEC) == FIELD_NAMES
KIND = np.array([s[1] for s in _SPEC], np.int8)
REQUIRED = np.array([s[2] for s in _SPEC], np.bool_)
NULLABLE = np.array([s[3] for s in _SPEC], np.bool_)
LO = np.array([s[4] for s in _SPEC], np.int64)
HI = np.array([s[5] for s in _SPEC], np.int64)
DEFAULT = np.array([s[6] for s in _SPEC], np.int64)

NETWORK_TYPES: tuple[str, ...] = ("residential", "mobile", "business", "hosting", "vpn", "proxy", "tor", "unknown")

# --- outputs ------------------------------------------------------------------------------
# Integer columns (int64 rows), by field.
INT_FIELDS = (F_TS, F_ASN, F_NETWORK_TYPE, F_STATUS, F_LATENCY_MS, F_PROMPT_TOKENS, F_COMPLETION_TOKENS,
              F_REASONING_TOKENS, F_ELICITS_REASONING, F_N, F_MAX_TOKENS, F_LOGPROBS, F_TOP_LOGPROBS,
              F_LOGIT_BIAS_COUNT, F_STREAM)  # fmt: skip
UINT_FIELDS = (F_PROMPT_HASH, F_PROMPT_SIMHASH, F_CLIENT_IP)  # uint64 rows; client_ip → its ip_key
FLOAT_FIELDS = (F_TEMPERATURE, F_TOP_P)
STR_FIELDS = (F_EVENT_ID, F_ACCOUNT_ID, F_API_KEY_ID, F_CLIENT_IP, F_COUNTRY, F_USER_AGENT, F_ENDPOINT,
              F_MODEL, F_TOPIC, F_PAYMENT_FINGERPRINT)  # fmt: skip


def _rows(fields: tuple[int, ...]) -> np.ndarray:
    rows = np.full(NF, -1, np.int64)
    rows[list(fields)] = np.arange(len(fields))
    return rows


INT_ROW, UINT_ROW, FLOAT_ROW, STR_ROW = _rows(INT_FIELDS), _rows(UINT_FIELDS), _rows(FLOAT_FIELDS), _rows(STR_FIELDS)

# Message status.
S_OK, S_PENDING, S_REJECT, S_FUTURE, S_OVERSIZED, S_FALLBACK = range(6)
# Pending bits: what Python still has to judge for an S_PENDING message.
PEND_IP, PEND_TEMPERATURE, PEND_TOP_P = 1, 2, 4

# Error codes (fast_json turns them into pydantic's messages).
(E_NONE, E_MISSING, E_INT_TYPE, E_GE, E_LE, E_STR_TYPE, E_TOO_SHORT, E_TOO_LONG, E_PATTERN, E_LITERAL,
 E_BOOL_TYPE, E_FLOAT_TYPE, E_TS_TYPE, E_TS_BOOL, E_TS_RANGE, E_IP) = range(16)  # fmt: skip

# Parsed JSON value types and per-field outcomes (kernel-internal).
V_MISSING, V_STR, V_INT, V_FLOAT, V_TRUE, V_FALSE, V_NULL, V_OBJ, V_ARR = range(9)
R_OK, R_ERR, R_UNSURE, R_PENDING, R_DERIVE = range(5)

MAX_DEPTH = 64  # deeper nesting falls back (jiter's own limit is higher; let it decide)
MAX_NUMBER_CHARS = 64  # longer number tokens fall back (jiter rejects very long ones)
MAX_EXP_DIGITS = 4

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _fnv_py(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _key_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-addressing table: FNV-1a of a key → field index (verified against the name bytes)."""
    size = 128
    slots = np.full(size, -1, np.int64)
    names = [name.encode() for name in FIELD_NAMES]
    for f, name in enumerate(names):
        h = _fnv_py(name) & (size - 1)
        while slots[h] >= 0:
            h = (h + 1) & (size - 1)
        slots[h] = f
    offsets = np.zeros(NF + 1, np.int64)
    offsets[1:] = np.cumsum([len(n) for n in names])
    return slots, np.frombuffer(b"".join(names), np.uint8).copy(), offsets


KEY_SLOTS, KEY_BYTES, KEY_OFFSETS = _key_table()
NET_BYTES = np.frombuffer("".join(NETWORK_TYPES).encode(), np.uint8).copy()
NET_OFFSETS = np.concatenate([[0], np.cumsum([len(t) for t in NETWORK_TYPES])]).astype(np.int64)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)
# Powers of ten exact in float64: Clinger's fast path (one correctly rounded operation).
_POW10 = np.array([10.0**i for i in range(23)], np.float64)


# --- lexical helpers -----------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _ws(buf, p, end):
    while p < end:
        c = buf[p]
        if c != 32 and c != 10 and c != 13 and c != 9:
            break
        p += 1
    return p


@njit(cache=True, nogil=True)
def _utf8_len(buf, p, end):
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


@njit(cache=True, nogil=True)
def _hex4(buf, p, end):
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
def _put_utf8(out, q, cp):
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
def _string(buf, p, end, scratch, sp, copy):
    """Scan a JSON string whose opening quote is at p-1.

    Returns (p after the closing quote or -1, start, end, nchars, has_nul, sp). Without
    escapes the span is in ``buf``; with escapes and ``copy`` the unescaped bytes are
    written to ``scratch`` at ``sp`` and the span is ``buf.size + offset`` (arena).
    Lone surrogate escapes return -1: jiter rejects them, so the caller falls back.
    """
    s = p
    nch = 0
    while p < end:
        c = buf[p]
        if c == 34:
            return p + 1, s, p, nch, False, sp
        if c == 92:
            break
        if c < 32:
            return -1, 0, 0, 0, False, sp
        if c < 128:
            p += 1
        else:
            k = _utf8_len(buf, p, end)
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
            nb = buf.size
            if copy:
                return p + 1, nb + q0, nb + q, nch, has_nul, q
            return p + 1, 0, 0, nch, has_nul, sp
        if c == 92:
            if p + 1 >= end:
                return -1, 0, 0, 0, False, sp
            d = buf[p + 1]
            if d == 117:  # \uXXXX
                cp = _hex4(buf, p + 2, end)
                if cp < 0:
                    return -1, 0, 0, 0, False, sp
                p += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if p + 1 >= end or buf[p] != 92 or buf[p + 1] != 117:
                        return -1, 0, 0, 0, False, sp
                    low = _hex4(buf, p + 2, end)
                    if low < 0xDC00 or low > 0xDFFF:
                        return -1, 0, 0, 0, False, sp
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                    p += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return -1, 0, 0, 0, False, sp
                if cp == 0:
                    has_nul = True
                if copy:
                    q = _put_utf8(scratch, q, cp)
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
            k = _utf8_len(buf, p, end)
            if k == 0:
                return -1, 0, 0, 0, False, sp
        if copy:
            for j in range(k):
                scratch[q] = buf[p + j]
                q += 1
        p += k
        nch += 1
    return -1, 0, 0, 0, False, sp


@njit(cache=True, nogil=True)
def _number(buf, p, end):
    """Scan a JSON number at p.

    Returns (p after it or -1, is_int, negative, mantissa, significant digits, e10):
    value = ±mantissa * 10**e10 when digits <= 19. -1 also for tokens the fast path
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
            if sig < 19:
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
            elif sig < 19:
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


@njit(cache=True, nogil=True)
def _literal(buf, p, end):
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
    p = _string(buf, p + 1, end, scratch, 0, False)[0]
    if p < 0:
        return -1
    p = _ws(buf, p, end)
    if p >= end or buf[p] != 58:
        return -1
    return p + 1


@njit(cache=True, nogil=True)
def _scalar_end(buf, p, end, scratch):
    c = buf[p]
    if c == 34:
        return _string(buf, p + 1, end, scratch, 0, False)[0]
    if c == 45 or 48 <= c <= 57:
        return _number(buf, p, end)[0]
    return _literal(buf, p, end)[0]


@njit(cache=True, nogil=True)
def _skip_value(buf, p, end, scratch, stack):
    """Validate and skip any JSON value at p (iteratively, up to MAX_DEPTH); p after it or -1."""
    depth = 0
    while True:
        p = _ws(buf, p, end)
        if p >= end:
            return -1
        c = buf[p]
        if c == 123 or c == 91:
            if depth >= MAX_DEPTH:
                return -1
            p = _ws(buf, p + 1, end)
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
            p = _ws(buf, p, end)
            if p >= end:
                return -1
            c = buf[p]
            top = stack[depth - 1]
            if c == 44:
                p += 1
                if top == 123:
                    p = _key_end(buf, _ws(buf, p, end), end, scratch)
                    if p < 0:
                        return -1
                break
            if c == top + 2:
                depth -= 1
                p += 1
                continue
            return -1


# --- judging one field's value -----------------------------------------------------------
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
def _judge_string(f, kind, arr, s, e, nch, has_nul, res, code, iv, uv):
    """A string value of field f (bytes arr[s:e], unescaped). Writes outcome, error code and value."""
    res[f] = R_OK
    code[f] = E_NONE
    if kind == K_STR:
        if has_nul:
            res[f] = R_UNSURE  # NUL separates strings in intern_strings' blob
        elif nch < LO[f]:
            res[f], code[f] = R_ERR, E_TOO_SHORT
        elif nch > HI[f]:
            res[f], code[f] = R_ERR, E_TOO_LONG
    elif kind == K_TS:
        ok, ms = rfc3339_ms(arr, s, e)
        if not ok:
            res[f] = R_UNSURE
        elif ms < TS_MIN_MS or ms >= TS_MAX_MS:
            res[f], code[f] = R_ERR, E_TS_RANGE
        else:
            iv[f] = ms
    elif kind == K_IP:
        if has_nul:
            res[f] = R_UNSURE
            return
        for j in range(s, e):
            if arr[j] == 58:  # ':' → IPv6 (or invalid): ipaddress decides
                res[f] = R_PENDING
                return
        key = ipv4_key(arr, s, e)
        if key < 0:
            res[f], code[f] = R_ERR, E_IP
        else:
            uv[f] = np.uint64(key)
    elif kind == K_NET:
        for t in range(NET_OFFSETS.size - 1):
            a, b = NET_OFFSETS[t], NET_OFFSETS[t + 1]
            if b - a == e - s:
                same = True
                for j in range(b - a):
                    if NET_BYTES[a + j] != arr[s + j]:
                        same = False
                        break
                if same:
                    iv[f] = t
                    return
        res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_COUNTRY:
        if not (e - s == 2 and 65 <= arr[s] <= 90 and 65 <= arr[s + 1] <= 90):
            res[f], code[f] = R_ERR, E_PATTERN
    elif kind == K_HEX:
        if e - s != 16:
            res[f], code[f] = R_ERR, E_PATTERN
            return
        h = np.uint64(0)
        for j in range(s, e):
            c = arr[j]
            if 48 <= c <= 57:
                d = c - 48
            elif 97 <= c <= 102:
                d = c - 87
            else:
                res[f], code[f] = R_ERR, E_PATTERN
                return
            h = (h << np.uint64(4)) | np.uint64(d)
        uv[f] = h
    elif kind == K_TEXT:
        if nch > HI[f]:
            res[f], code[f] = R_ERR, E_TOO_LONG
        else:
            res[f] = R_DERIVE  # valid; the hashes may have to be derived from it (Python)
    elif kind == K_VERSION:
        res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_INT:
        res[f], code[f] = R_ERR, E_INT_TYPE
    elif kind == K_BOOL:
        res[f], code[f] = R_ERR, E_BOOL_TYPE
    else:  # K_FLOAT
        res[f], code[f] = R_ERR, E_FLOAT_TYPE


@njit(cache=True, nogil=True)
def _exact_float(neg, mant, sig, e10):
    """(ok, value) when one correctly rounded operation gives the value (Clinger's fast path)."""
    if mant == 0:
        return True, -0.0 if neg else 0.0
    if sig > 15 or e10 < -22 or e10 > 22:
        return False, 0.0
    v = float(mant)
    v = v * _POW10[e10] if e10 >= 0 else v / _POW10[-e10]
    return True, -v if neg else v


@njit(cache=True, nogil=True)
def _judge_number(f, kind, is_int, neg, mant, sig, e10, res, code, iv, fv):
    res[f] = R_OK
    code[f] = E_NONE
    if is_int and sig > 18:
        res[f] = R_UNSURE  # beyond int64: let pydantic judge the big integer
        return
    value = -mant if neg else mant
    if kind == K_INT:
        if not is_int:
            res[f], code[f] = R_ERR, E_INT_TYPE  # strict: 1.0 is not an integer
        elif value < LO[f]:
            res[f], code[f] = R_ERR, E_GE
        elif value > HI[f]:
            res[f], code[f] = R_ERR, E_LE
        else:
            iv[f] = value
    elif kind == K_FLOAT:
        if is_int and sig > 15:
            res[f] = R_UNSURE
            return
        ok, x = _exact_float(neg and not is_int, mant, sig, e10)  # the integer -0 is 0.0, not -0.0
        if not ok:
            res[f] = R_PENDING  # Python's float() rounds it exactly as jiter does
        elif x < LO[f]:
            res[f], code[f] = R_ERR, E_GE
        elif x > HI[f]:
            res[f], code[f] = R_ERR, E_LE
        else:
            fv[f] = x
    elif kind == K_TS:
        if not is_int:
            res[f], code[f] = R_ERR, E_TS_TYPE
        elif value < TS_MIN_MS or value >= TS_MAX_MS:
            res[f], code[f] = R_ERR, E_TS_RANGE
        else:
            iv[f] = value
    elif kind == K_VERSION:
        # Literal[1] accepts 1, 1.0, 10e-1 (and true): equal to 1 as a number.
        ok, x = _exact_float(neg, mant, sig, e10)
        if not ok:
            res[f] = R_UNSURE
        elif x != 1.0:
            res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_NET:
        res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_BOOL:
        res[f], code[f] = R_ERR, E_BOOL_TYPE
    else:  # string kinds
        res[f], code[f] = R_ERR, E_STR_TYPE


@njit(cache=True, nogil=True)
def _judge_other(f, kind, vt, res, code, iv, fv, uv):
    """true / false / null / object / array for field f."""
    res[f] = R_OK
    code[f] = E_NONE
    if vt == V_NULL and NULLABLE[f]:
        iv[f] = DEFAULT[f]
        fv[f] = np.nan
        uv[f] = 0
        return
    if kind == K_BOOL:
        if vt == V_TRUE or vt == V_FALSE:
            iv[f] = 1 if vt == V_TRUE else 0
        else:
            res[f], code[f] = R_ERR, E_BOOL_TYPE
    elif kind == K_TS:
        res[f], code[f] = R_ERR, (E_TS_BOOL if vt == V_TRUE or vt == V_FALSE else E_TS_TYPE)
    elif kind == K_VERSION:
        if vt != V_TRUE:  # Literal[1] accepts true (True == 1)
            res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_NET:
        res[f], code[f] = R_ERR, E_LITERAL
    elif kind == K_INT:
        res[f], code[f] = R_ERR, E_INT_TYPE
    elif kind == K_FLOAT:
        res[f], code[f] = R_ERR, E_FLOAT_TYPE
    else:
        res[f], code[f] = R_ERR, E_STR_TYPE


@njit(cache=True, nogil=True)
def _field_of_key(buf, s, e):
    """Contract field index of the key buf[s:e] (no escapes), or -1."""
    h = _FNV_OFFSET
    for j in range(s, e):
        h = (h ^ np.uint64(buf[j])) * _FNV_PRIME
    mask = KEY_SLOTS.size - 1
    slot = np.int64(h & np.uint64(mask))
    while True:
        f = KEY_SLOTS[slot]
        if f < 0:
            return -1
        a, b = KEY_OFFSETS[f], KEY_OFFSETS[f + 1]
        if b - a == e - s:
            same = True
            for j in range(b - a):
                if KEY_BYTES[a + j] != buf[s + j]:
                    same = False
                    break
            if same:
                return f
        slot = (slot + 1) & mask


# --- one message -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _parse_object(buf, p, end, scratch, sp, stack, vt, res, code, iv, fv, uv, ss, se, ps, pe):
    """Parse one message as a flat object, judging contract fields. Returns (parsed ok, sp)."""
    p = _ws(buf, p, end)
    if p >= end or buf[p] != 123:
        return False, sp  # not an object, or invalid: pydantic names the reason
    p = _ws(buf, p + 1, end)
    if p < end and buf[p] == 125:
        p += 1
    else:
        while True:
            if p >= end or buf[p] != 34:
                return False, sp
            ks = p + 1
            p = ks
            plain = True
            while p < end and buf[p] != 34:
                c = buf[p]
                if c == 92 or c < 32 or c >= 128:
                    plain = False  # escaped key (may spell a field name) or non-ASCII
                    break
                p += 1
            if p >= end:
                return False, sp
            if plain:
                f = _field_of_key(buf, ks, p)
                p += 1
            else:
                p, _, _, _, _, _ = _string(buf, ks, end, scratch, sp, False)
                if p < 0 or buf[p - 1] != 34:
                    return False, sp
                # An escaped key could spell a field name: only non-ASCII plain keys are safe to ignore.
                for j in range(ks, p - 1):
                    if buf[j] == 92:
                        return False, sp
                f = -1
            p = _ws(buf, p, end)
            if p >= end or buf[p] != 58:
                return False, sp
            p = _ws(buf, p + 1, end)
            if p >= end:
                return False, sp
            if f < 0:
                p = _skip_value(buf, p, end, scratch, stack)
                if p < 0:
                    return False, sp
            else:
                kind = KIND[f]
                c = buf[p]
                if c == 34:
                    p, s, e, nch, has_nul, sp = _string(buf, p + 1, end, scratch, sp, True)
                    if p < 0:
                        return False, sp
                    vt[f] = V_STR
                    ss[f], se[f] = s, e
                    nb = buf.size
                    if s >= nb:
                        _judge_string(f, kind, scratch, s - nb, e - nb, nch, has_nul, res, code, iv, uv)
                    else:
                        _judge_string(f, kind, buf, s, e, nch, has_nul, res, code, iv, uv)
                elif c == 45 or 48 <= c <= 57:
                    q, is_int, neg, mant, sig, e10 = _number(buf, p, end)
                    if q < 0:
                        return False, sp
                    vt[f] = V_INT if is_int else V_FLOAT
                    ps[f], pe[f] = p, q
                    p = q
                    _judge_number(f, kind, is_int, neg, mant, sig, e10, res, code, iv, fv)
                elif c == 123 or c == 91:
                    p = _skip_value(buf, p, end, scratch, stack)
                    if p < 0:
                        return False, sp
                    vt[f] = V_OBJ if c == 123 else V_ARR
                    _judge_other(f, kind, vt[f], res, code, iv, fv, uv)
                else:
                    p, t = _literal(buf, p, end)
                    if p < 0:
                        return False, sp  # NaN, Infinity, garbage
                    vt[f] = t
                    _judge_other(f, kind, t, res, code, iv, fv, uv)
            p = _ws(buf, p, end)
            if p >= end:
                return False, sp
            if buf[p] == 44:
                p = _ws(buf, p + 1, end)
                continue
            if buf[p] == 125:
                p += 1
                break
            return False, sp
    return _ws(buf, p, end) == end, sp


@njit(cache=True, nogil=True)
def scan_events(buf, starts, lens, max_bytes, max_ts_ms):
    """Parse and judge every message of a batch.

    Returns (status, err_field, err_code, err_count, pend, ints, uints, floats,
    str_start, str_end, num_start, num_end, scratch): per message its status and, for
    S_REJECT, the first failing field, its code and how many fields fail; for
    S_PENDING the PEND_* bits; columns by INT_ROW / UINT_ROW / FLOAT_ROW / STR_ROW
    (arena spans); number token spans of the float fields (for pending floats).
    """
    n = starts.size
    status = np.empty(n, np.int8)
    err_field = np.zeros(n, np.int8)
    err_code = np.zeros(n, np.int8)
    err_count = np.zeros(n, np.int16)
    pend = np.zeros(n, np.int8)
    ints = np.zeros((len(INT_FIELDS), n), np.int64)
    uints = np.zeros((len(UINT_FIELDS), n), np.uint64)
    floats = np.full((len(FLOAT_FIELDS), n), np.nan)
    str_start = np.zeros((len(STR_FIELDS), n), np.int64)
    str_end = np.zeros((len(STR_FIELDS), n), np.int64)
    num_start = np.zeros((len(FLOAT_FIELDS), n), np.int64)
    num_end = np.zeros((len(FLOAT_FIELDS), n), np.int64)
    scratch = np.empty(buf.size + 8, np.uint8)
    sp = 0
    stack = np.zeros(MAX_DEPTH + 1, np.uint8)
    vt = np.zeros(NF, np.int8)
    res = np.zeros(NF, np.int8)
    code = np.zeros(NF, np.int8)
    iv = np.zeros(NF, np.int64)
    fv = np.zeros(NF, np.float64)
    uv = np.zeros(NF, np.uint64)
    ss = np.zeros(NF, np.int64)
    se = np.zeros(NF, np.int64)
    ps = np.zeros(NF, np.int64)
    pe = np.zeros(NF, np.int64)
    for i in range(n):
        if lens[i] > max_bytes:
            status[i] = S_OVERSIZED
            continue
        for f in range(NF):
            vt[f] = V_MISSING
            iv[f] = DEFAULT[f]
            fv[f] = np.nan
            uv[f] = 0
            ss[f] = 0
            se[f] = 0
        ok, sp = _parse_object(buf, starts[i], starts[i] + lens[i], scratch, sp, stack,
                               vt, res, code, iv, fv, uv, ss, se, ps, pe)
        if not ok:
            status[i] = S_FALLBACK
            continue
        # Combine in model order: the first failing field is pydantic's first error.
        unsure = False
        derive = False
        pending = 0
        n_err = 0
        for f in range(NF):
            if vt[f] == V_MISSING:
                if REQUIRED[f]:
                    if n_err == 0:
                        err_field[i], err_code[i] = f, E_MISSING
                    n_err += 1
                continue
            r = res[f]
            if r == R_ERR:
                if n_err == 0:
                    err_field[i], err_code[i] = f, code[f]
                n_err += 1
            elif r == R_UNSURE:
                unsure = True
            elif r == R_PENDING:
                pending |= PEND_IP if f == F_CLIENT_IP else (PEND_TEMPERATURE if f == F_TEMPERATURE else PEND_TOP_P)
            elif r == R_DERIVE:
                # prompt_text only matters when a hash is missing: then Python derives it.
                if vt[F_PROMPT_HASH] in (V_MISSING, V_NULL) or vt[F_PROMPT_SIMHASH] in (V_MISSING, V_NULL):
                    derive = True
        if unsure or (pending and n_err):
            status[i] = S_FALLBACK  # the error count or the first error is not certain
            continue
        if n_err:
            status[i] = S_REJECT
            err_count[i] = n_err
            continue
        if derive:
            status[i] = S_FALLBACK
            continue
        for f in range(NF):
            r = INT_ROW[f]
            if r >= 0:
                ints[r, i] = iv[f]
            r = UINT_ROW[f]
            if r >= 0:
                uints[r, i] = uv[f]
            r = FLOAT_ROW[f]
            if r >= 0:
                floats[r, i] = fv[f]
                num_start[r, i], num_end[r, i] = ps[f], pe[f]
            r = STR_ROW[f]
            if r >= 0 and vt[f] == V_STR:
                str_start[r, i], str_end[r, i] = ss[f], se[f]
        if pending:
            status[i] = S_PENDING
            pend[i] = pending
        elif iv[F_TS] > max_ts_ms:
            status[i] = S_FUTURE
        else:
            status[i] = S_OK
    return (status, err_field, err_code, err_count, pend, ints, uints, floats, str_start, str_end,
            num_start, num_end, scratch)


# --- strings: distinct values once --------------------------------------------------------------
@njit(cache=True, nogil=True)
def intern_strings(buf, scratch, starts, ends, unique):
    """Distinct strings of arena spans, in first-seen order, as one NUL-separated UTF-8 blob.

    Returns (row_id, blob, n_distinct): row i's string is distinct string row_id[i].
    With ``unique`` every row is its own string (no hashing: event ids). Spans come
    from scan_events, so they never contain NUL (such strings fall back).
    """
    m = starts.size
    nb = buf.size
    row_id = np.empty(m, np.int64)
    first = np.empty(m, np.int64)
    k = 0
    if unique:
        for i in range(m):
            row_id[i] = i
            first[i] = i
        k = m
    else:
        size = 16
        while size < 2 * m:
            size *= 2
        table = np.full(size, -1, np.int64)
        hashes = np.empty(m, np.uint64)
        for i in range(m):
            s, e = starts[i], ends[i]
            src = buf if s < nb else scratch
            off = 0 if s < nb else nb
            h = _FNV_OFFSET
            for j in range(s - off, e - off):
                h = (h ^ np.uint64(src[j])) * _FNV_PRIME
            slot = np.int64(h & np.uint64(size - 1))
            while True:
                d = table[slot]
                if d < 0:
                    table[slot] = k
                    hashes[k] = h
                    first[k] = i
                    row_id[i] = k
                    k += 1
                    break
                if hashes[d] == h:
                    r = first[d]
                    s2, e2 = starts[r], ends[r]
                    if e2 - s2 == e - s:
                        src2 = buf if s2 < nb else scratch
                        off2 = 0 if s2 < nb else nb
                        same = True
                        for j in range(e - s):
                            if src[s - off + j] != src2[s2 - off2 + j]:
                                same = False
                                break
                        if same:
                            row_id[i] = d
                            break
                slot = (slot + 1) & (size - 1)
    total = 0
    for d in range(k):
        r = first[d]
        total += ends[r] - starts[r] + 1
    blob = np.empty(max(total - 1, 0), np.uint8)
    q = 0
    for d in range(k):
        r = first[d]
        s, e = starts[r], ends[r]
        src = buf if s < nb else scratch
        off = 0 if s < nb else nb
        if d > 0:
            blob[q] = 0
            q += 1
        for j in range(s - off, e - off):
            blob[q] = src[j]
            q += 1
    return row_id, blob, k
