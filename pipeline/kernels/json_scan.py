"""Numba scanner for batches of one-JSON-event-per-message values (the event contract).

Pure functions over arrays: one uint8 buffer with per-message start and length, no Python
object per event. Every contract field is judged exactly as the pydantic model
(``schemas.event.ApiCallEvent``, strict mode) judges it, and each message gets a status
(``S_OK``, ``S_REJECT``, ``S_FUTURE``, ``S_PENDING``, ``S_OVERSIZED``, ``S_FALLBACK``). The rule:
decide only what is certain, fall back on everything else (the differential tests compare this
path with pydantic). After editing json_lex, intern or raw_memory, delete their cache entries:
Numba does not follow imports. Statuses, strings and the cache: docs/architecture.md
("The JSON scanner").
"""

from __future__ import annotations

import sys
from collections import namedtuple
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

import numpy as np
from numba import njit
from numba.core.caching import FunctionCache
from numba.core.registry import CPUDispatcher

from pipeline.kernels.event_spec import (
    DEFAULT,
    DERIVED,
    E_MISSING,
    F_CLIENT_IP,
    F_PROMPT_TEXT,
    F_TEMPERATURE,
    F_TS,
    FLOAT_FIELDS,
    INT_FIELDS,
    KEY_BYTES,
    KEY_OFFSETS,
    KEY_SLOTS,
    NF,
    PEND_DERIVE,
    PEND_IP,
    PEND_TEMPERATURE,
    PEND_TOP_P,
    R_DERIVE,
    R_ERR,
    R_PENDING,
    R_UNSURE,
    REQUIRED,
    S_FALLBACK,
    S_FUTURE,
    S_OK,
    S_OVERSIZED,
    S_PENDING,
    S_REJECT,
    SPEC_FINGERPRINT,
    STR_FIELDS,
    STR_UNIQUE,
    UINT_FIELDS,
)
from pipeline.kernels.intern import EMPTY_ID, append, find_or_add, grown, span_hash
from pipeline.kernels.json_judge import judge_number, judge_other, judge_string
from pipeline.kernels.json_lex import (
    FNV_OFFSET,
    FNV_PRIME,
    MAX_DEPTH,
    V_ARR,
    V_FLOAT,
    V_INT,
    V_MISSING,
    V_NULL,
    V_OBJ,
    V_STR,
    literal,
    number,
    plain_end,
    same_bytes,
    skip_value,
    string,
    ws,
)
from pipeline.kernels.raw_memory import as_ptr


@njit(cache=True, nogil=True, inline="always")
def _field_of_key(buf, s, e):
    """Contract field index of the key buf[s:e] (plain ASCII), or -1."""
    h = FNV_OFFSET
    for j in range(s, e):
        h = (h ^ np.uint64(buf[j])) * FNV_PRIME
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
def _parse_object(buf, nb, p, end, scratch, sp, stack, vt, res, code, iv, fv, uv, ss, se, ps, pe, after):
    """Parse one message as a flat object, judging contract fields. Returns (parsed ok, sp).

    ``after[f]`` is the field that followed field f last time (``after[NF]``: the first
    field): producers keep their key order, so a key is usually recognised by comparing
    it with that one name, without scanning or hashing it.
    """
    p = ws(buf, p, end)
    if p >= end or buf[p] != 123:
        return False, sp  # not an object, or invalid: pydantic names the reason
    p = ws(buf, p + 1, end)
    if p < end and buf[p] == 125:
        return ws(buf, p + 1, end) == end, sp
    prev = NF
    while True:
        if p >= end or buf[p] != 34:
            return False, sp
        ks = p + 1
        # The key: first the field expected after the previous one.
        f = after[prev]
        if f >= 0:
            a = KEY_OFFSETS[f]
            n_key = KEY_OFFSETS[f + 1] - a
            if ks + n_key < end and buf[ks + n_key] == 34 and same_bytes(KEY_BYTES, a, buf, ks, n_key):
                p = ks + n_key + 1
            else:
                f = -2
        if f < 0:
            # Any other key: plain ASCII is looked up; escaped keys (they may spell a field) fall back.
            p = plain_end(buf, ks, end)
            if p >= end:
                return False, sp
            if buf[p] == 34:
                f = _field_of_key(buf, ks, p)
                p += 1
                after[prev] = f
            else:
                p = string(buf, nb, ks, end, scratch, sp, False)[0]
                if p < 0:
                    return False, sp
                for j in range(ks, p - 1):
                    if buf[j] == 92:
                        return False, sp
                f = -1  # non-ASCII: not a contract field
                after[prev] = f
        prev = f if f >= 0 else NF
        p = ws(buf, p, end)
        if p >= end or buf[p] != 58:
            return False, sp
        p = ws(buf, p + 1, end)
        if p >= end:
            return False, sp
        if f < 0:
            p = skip_value(buf, p, end, scratch, stack)
            if p < 0:
                return False, sp
        else:
            c = buf[p]
            if c == 34:
                # Plain ASCII strings (nearly all) are scanned here; the rest by string().
                s = p + 1
                q = plain_end(buf, s, end)
                if q < end and buf[q] == 34:
                    e = q
                    p = q + 1
                    r, k, ival, uval = judge_string(f, buf, s, e, e - s, False)
                else:
                    p, s, e, nch, has_nul, sp = string(buf, nb, p + 1, end, scratch, sp, True)
                    if p < 0:
                        return False, sp
                    if s >= nb:
                        r, k, ival, uval = judge_string(f, scratch, s - nb, e - nb, nch, has_nul)
                    else:
                        r, k, ival, uval = judge_string(f, buf, s, e, nch, has_nul)
                vt[f] = V_STR
                ss[f], se[f] = s, e
                res[f], code[f], iv[f], uv[f] = r, k, ival, uval
            elif c == 45 or 48 <= c <= 57:
                q, is_int, neg, mant, sig, e10 = number(buf, p, end)
                if q < 0:
                    return False, sp
                vt[f] = V_INT if is_int else V_FLOAT
                ps[f], pe[f] = p, q
                p = q
                r, k, ival, fval = judge_number(f, is_int, neg, mant, sig, e10)
                res[f], code[f], iv[f], fv[f] = r, k, ival, fval
            else:
                if c == 123 or c == 91:
                    p = skip_value(buf, p, end, scratch, stack)
                    t = V_OBJ if c == 123 else V_ARR
                else:
                    p, t = literal(buf, p, end)  # NaN, Infinity, garbage: -1
                if p < 0:
                    return False, sp
                vt[f] = t
                r, k, ival = judge_other(f, t)
                res[f], code[f], iv[f] = r, k, ival
                fv[f] = np.nan
                uv[f] = 0
        p = ws(buf, p, end)
        if p >= end:
            return False, sp
        if buf[p] == 44:
            p = ws(buf, p + 1, end)
            continue
        if buf[p] == 125:
            return ws(buf, p + 1, end) == end, sp
        return False, sp


@njit(cache=True, nogil=True, inline="always")
def _intern_span(src, s, e, unique, table, mask, d_hash, d_start, d_len, arena, q, k):
    """(id, arena end, next id, added to table) for one output string."""
    if e == s:
        return EMPTY_ID, q, k, False
    if unique:
        return k, append(src, s, e, arena, q, d_start, d_len, k), k + 1, False
    d, q, k2 = find_or_add(src, s, e, span_hash(src, s, e), table, mask, d_hash, d_start, d_len, arena, q, k)
    return d, q, k2, k2 > k


# Output and work arrays of one scan, grouped (scan_events allocates them, _scan fills them).
_Out = namedtuple("_Out", "status err_field err_code err_count pend ints uints floats num_start num_end str_ids "
                         "missing text_start text_end")
_Strings = namedtuple("_Strings", "arena d_start d_len d_hash")
_Work = namedtuple("_Work", "vt res code iv fv uv ss se ps pe after")


# Never inline _scan into scan_events: the pointers it takes (as_ptr) are valid because
# scan_events holds every array argument until the call returns.
@njit(cache=True, nogil=True)
def _scan(buf, starts, lens, max_bytes, max_ts_ms, scratch, stack, out, strings, work):
    """scan_events' loop. Returns the arena's and scratch's ends, and the intern table (to outlive its pointer)."""
    n = starts.size
    nb = buf.size
    ns = len(STR_FIELDS)
    status, err_field, err_code, err_count, pend = out.status, out.err_field, out.err_code, out.err_count, out.pend
    ints, uints, floats, num_start, num_end, str_ids = (out.ints, out.uints, out.floats, out.num_start,
                                                        out.num_end, out.str_ids)
    # Helpers get raw pointers: no reference counting per call (see as_ptr).
    b, sc, stk = as_ptr(buf), as_ptr(scratch), as_ptr(stack)
    vt_, res_, code_ = as_ptr(work.vt), as_ptr(work.res), as_ptr(work.code)
    iv_, fv_, uv_ = as_ptr(work.iv), as_ptr(work.fv), as_ptr(work.uv)
    ss_, se_, ps_, pe_, after = as_ptr(work.ss), as_ptr(work.se), as_ptr(work.ps), as_ptr(work.pe), as_ptr(work.after)
    ar, ds, dl, dh = as_ptr(strings.arena), as_ptr(strings.d_start), as_ptr(strings.d_len), as_ptr(strings.d_hash)
    table = np.full(1024, -1, np.int32)  # grows (see grown); tb always points at the current one
    tb = as_ptr(table)
    in_table = 0
    q = 0
    k = EMPTY_ID + 1
    sp = 0
    for i in range(n):
        if lens[i] > max_bytes:
            status[i] = S_OVERSIZED
            continue
        for f in range(NF):
            vt_[f] = V_MISSING
            iv_[f] = DEFAULT[f]
            fv_[f] = np.nan
            uv_[f] = 0
        ok, sp = _parse_object(b, nb, starts[i], starts[i] + lens[i], sc, sp, stk,
                               vt_, res_, code_, iv_, fv_, uv_, ss_, se_, ps_, pe_, after)
        if not ok:
            status[i] = S_FALLBACK
            continue
        # Combine in model order: the first failing field is pydantic's first error.
        unsure = False
        derive = False  # a valid prompt_text
        pending = 0
        n_err = 0
        for f in range(NF):
            if vt_[f] == V_MISSING:
                if REQUIRED[f]:
                    if n_err == 0:
                        err_field[i], err_code[i] = f, E_MISSING
                    n_err += 1
                continue
            r = res_[f]
            if r == R_ERR:
                if n_err == 0:
                    err_field[i], err_code[i] = f, code_[f]
                n_err += 1
            elif r == R_UNSURE:
                unsure = True
            elif r == R_PENDING:
                pending |= PEND_IP if f == F_CLIENT_IP else (PEND_TEMPERATURE if f == F_TEMPERATURE else PEND_TOP_P)
            elif r == R_DERIVE:
                derive = True
        if unsure or (pending and n_err):
            status[i] = S_FALLBACK  # the error count or the first error is not certain
            continue
        if n_err:
            status[i] = S_REJECT
            err_count[i] = n_err
            continue
        if derive:
            # prompt_text only matters when a derived field is absent or null: Python derives those
            # from the text, which is buf[s:e] (or scratch[s - nb:e - nb] when it had escapes).
            lack = 0
            for j in range(DERIVED.size):
                if vt_[DERIVED[j]] == V_MISSING or vt_[DERIVED[j]] == V_NULL:
                    lack |= 1 << j
            if lack:
                pending |= PEND_DERIVE
                out.missing[i] = lack
                out.text_start[i], out.text_end[i] = ss_[F_PROMPT_TEXT], se_[F_PROMPT_TEXT]
        for r in range(len(INT_FIELDS)):
            ints[r, i] = iv_[INT_FIELDS[r]]
        for r in range(len(UINT_FIELDS)):
            uints[r, i] = uv_[UINT_FIELDS[r]]
        for r in range(len(FLOAT_FIELDS)):
            f = FLOAT_FIELDS[r]
            floats[r, i] = fv_[f]
            num_start[r, i], num_end[r, i] = ps_[f], pe_[f]
        if (in_table + ns) * 2 > table.size:
            table = grown(table, strings.d_hash)
            tb = as_ptr(table)
        mask = table.size - 1
        for r in range(ns):
            f = STR_FIELDS[r]
            if vt_[f] != V_STR:
                str_ids[r, i] = EMPTY_ID  # absent or null: ""
                continue
            s, e = ss_[f], se_[f]
            if s >= nb:
                d, q, k, added = _intern_span(sc, s - nb, e - nb, STR_UNIQUE[r], tb, mask, dh, ds, dl, ar, q, k)
            else:
                d, q, k, added = _intern_span(b, s, e, STR_UNIQUE[r], tb, mask, dh, ds, dl, ar, q, k)
            str_ids[r, i] = d
            in_table += added
        if pending:
            status[i] = S_PENDING
            pend[i] = pending
        elif iv_[F_TS] > max_ts_ms:
            status[i] = S_FUTURE
        else:
            status[i] = S_OK
    return q, sp, table


@njit(cache=True, nogil=True)
def scan_events(buf, starts, lens, max_bytes, max_ts_ms):
    """Parse and judge every message of a batch.

    Returns (status, err_field, err_code, err_count, pend, ints, uints, floats,
    str_ids, arena, num_start, num_end, missing, text_start, text_end, scratch): per
    message its status and, for S_REJECT, the first failing field, its code and how
    many fields fail; for S_PENDING the PEND_* bits; column rows in the order of
    INT_FIELDS / UINT_FIELDS / FLOAT_FIELDS / STR_FIELDS (strings as distinct ids: value
    d is the d-th NUL-separated piece of ``arena``, 0 is ""); the number token spans of
    the float fields (for pending floats); for PEND_DERIVE, the bits of the DERIVED
    fields the event lacks and the span of its prompt_text (UTF-8, unescaped: in
    ``buf``, or at ``buf.size + offset`` in ``scratch`` when it had escapes). Derived
    fields the event lacks hold their defaults (0, "", false) until Python fills them.
    """
    n = starts.size
    nb = buf.size
    ns = len(STR_FIELDS)
    # Column rows are written for every S_OK / S_PENDING message, the only ones read:
    # np.empty spares zeroing (and faulting in) memory nobody reads.
    out = _Out(
        np.empty(n, np.int8), np.zeros(n, np.int8), np.zeros(n, np.int8), np.zeros(n, np.int16),
        np.zeros(n, np.int8), np.empty((len(INT_FIELDS), n), np.int64), np.empty((len(UINT_FIELDS), n), np.uint64),
        np.empty((len(FLOAT_FIELDS), n), np.float64), np.empty((len(FLOAT_FIELDS), n), np.int64),
        np.empty((len(FLOAT_FIELDS), n), np.int64), np.empty((ns, n), np.int32),
        np.zeros(n, np.int8), np.empty(n, np.int64), np.empty(n, np.int64),
    )
    # Interning: at worst every string is distinct (its bytes plus a separator).
    strings = _Strings(np.empty(nb + ns * n + 16, np.uint8), np.empty(ns * n + 1, np.int64),
                       np.empty(ns * n + 1, np.int64), np.empty(ns * n + 1, np.uint64))
    # Per-message work arrays, one per field.
    work = _Work(np.zeros(NF, np.int8), np.zeros(NF, np.int8), np.zeros(NF, np.int8), np.zeros(NF, np.int64),
                 np.zeros(NF, np.float64), np.zeros(NF, np.uint64), np.zeros(NF, np.int64), np.zeros(NF, np.int64),
                 np.zeros(NF, np.int64), np.zeros(NF, np.int64), np.full(NF + 1, -1, np.int64))
    scratch = np.empty(nb + 8, np.uint8)
    q, sp, _ = _scan(buf, starts, lens, max_bytes, max_ts_ms, scratch, np.zeros(MAX_DEPTH + 1, np.uint8), out,
                     strings, work)
    return (out.status, out.err_field, out.err_code, out.err_count, out.pend, out.ints, out.uints, out.floats,
            out.str_ids, strings.arena[:q], out.num_start, out.num_end, out.missing, out.text_start, out.text_end,
            scratch[:sp])


def drop_stale_cache(dispatchers: Iterable[CPUDispatcher], fingerprint: str, mark: str) -> bool:
    """Empty the Numba cache of ``dispatchers`` unless it was compiled from ``fingerprint``; True if emptied.

    The cache is keyed on each source file's time stamp, but the constants a kernel
    reads are frozen into it: a mark file beside the cache records whose they are.
    """
    dispatchers = list(dispatchers)
    path = Path(FunctionCache(dispatchers[0].py_func).cache_path) / mark
    try:
        if path.read_text() == fingerprint:
            return False
    except OSError:
        pass
    for dispatcher in dispatchers:
        FunctionCache(dispatcher.py_func).flush()
    with suppress(OSError):  # a read-only cache: the next check empties it again
        path.write_text(fingerprint)
    return True


def _spec_dispatchers() -> list[CPUDispatcher]:
    """Every cached kernel that reads event_spec's constants: this module's and json_judge's."""
    modules = (sys.modules[__name__], sys.modules["pipeline.kernels.json_judge"])
    return [v for m in modules for v in vars(m).values()
            if isinstance(v, CPUDispatcher) and v.py_func.__module__ == m.__name__]


drop_stale_cache(_spec_dispatchers(), SPEC_FINGERPRINT, "json_scan.spec")
