"""The event contract as the JSON scanner sees it: fields, kinds, bounds, codes.

Read at import from the model (``schemas.event_rules``, which reads
``schemas.event.ApiCallEvent``) into arrays a Numba kernel can read, in the model's
field order (pydantic reports the first failing field in that order). Also the
scanner's output layout, message statuses and error codes. Plain constants and
NumPy arrays only: Numba freezes them into the compiled scanner, and
``SPEC_FINGERPRINT`` lets ``json_scan`` drop a cache compiled from other values.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from pipeline.kernels.json_lex import fnv1a
from schemas.event import TS_MAX_MS as TS_MAX_MS  # re-exported: the kernels read them here
from schemas.event import TS_MIN_MS as TS_MIN_MS
from schemas.event_rules import FAILURES, RULES, FieldRule
from schemas.prompt_derive import DERIVED_FIELDS
from schemas.tables import API_CALLS

# --- the contract's fields, in model order (pydantic reports errors in this order) ----
FIELD_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
NF = len(FIELD_NAMES)
F_CLIENT_IP, F_PROMPT_HASH, F_PROMPT_SIMHASH, F_PROMPT_TEXT, F_TEMPERATURE, F_TOP_P, F_TS = map(
    FIELD_NAMES.index, ("client_ip", "prompt_hash", "prompt_simhash", "prompt_text", "temperature", "top_p", "ts"))
# What prompt_text derives when the event lacks it (schemas.prompt_derive), in DERIVED_FIELDS
# order: bit j of a row's ``missing`` mask is DERIVED[j] (Python derives those, PEND_DERIVE).
DERIVED = np.array([FIELD_NAMES.index(name) for name in DERIVED_FIELDS], np.int64)

# Field kinds: how a value is judged.
K_VERSION, K_TS, K_STR, K_IP, K_INT, K_NET, K_COUNTRY, K_HEX, K_TEXT, K_BOOL, K_FLOAT = range(11)
# The model's validators and patterns the scanner has a judge for (an unknown one fails the import).
_BY_VALIDATOR = {"_parse_ts": K_TS, "_check_ip": K_IP}
_BY_PATTERN = {"^[A-Z]{2}$": K_COUNTRY, "^[0-9a-f]{16}$": K_HEX}
_BY_TYPE = {"string": K_STR, "integer": K_INT, "number": K_FLOAT, "boolean": K_BOOL}


def _kind(r: FieldRule) -> int:
    if r.validator is not None:
        return _BY_VALIDATOR[r.validator]
    if r.pattern is not None:
        return _BY_PATTERN[r.pattern]
    if r.choices is not None:
        return K_NET if r.type == "string" else K_VERSION
    return K_TEXT if r.carrier else _BY_TYPE[r.type]


def _bound(r: FieldRule, value: float | None) -> int:
    if value is None:
        return r.choices[0] if _kind(r) == K_VERSION else 0  # type: ignore[index,return-value]
    if value != math.floor(value):
        raise ValueError(f"the scanner keeps bounds as integers, not {value}")
    return int(value)


KIND = np.array([_kind(r) for r in RULES], np.int8)
REQUIRED = np.array([r.required for r in RULES], np.bool_)
NULLABLE = np.array([r.nullable for r in RULES], np.bool_)
# Lower/upper bound: numbers: the value; strings: the length in characters; Literal[1]: 1.
LO = np.array([_bound(r, r.lo) for r in RULES], np.int64)
HI = np.array([_bound(r, r.hi) for r in RULES], np.int64)
(NETWORK_TYPES,) = (r.choices for r in RULES if _kind(r) == K_NET)
# The output value of an absent or null field (the api_calls conventions: ``asn or 0``,
# top_logprobs -1; network_type is its index in NETWORK_TYPES; floats: kept apart).
DEFAULT = np.array([NETWORK_TYPES.index(r.default) if _kind(r) == K_NET else
                    0 if r.type == "number" else int(r.stored_default(True)) for r in RULES], np.int64)

# --- outputs: the fields the api_calls table stores (schemas/tables.py), in model order ---
_STORED = {name for name, _ in API_CALLS.columns}
_OUT = [f for f in range(NF) if FIELD_NAMES[f] in _STORED]
# Integer columns (int64 rows), by field.
INT_FIELDS = tuple(f for f in _OUT if KIND[f] in (K_TS, K_INT, K_NET, K_BOOL))
# uint64 rows: the hashes, then client_ip's ip_key.
UINT_FIELDS = tuple(f for f in _OUT if KIND[f] == K_HEX) + tuple(f for f in _OUT if KIND[f] == K_IP)
FLOAT_FIELDS = tuple(f for f in _OUT if KIND[f] == K_FLOAT)
STR_FIELDS = tuple(f for f in _OUT if KIND[f] in (K_STR, K_IP, K_COUNTRY))
# Columns unique per event: appended without looking for repeats.
STR_UNIQUE = np.array([FIELD_NAMES[f] == "event_id" for f in STR_FIELDS], np.bool_)


# Message status.
S_OK, S_PENDING, S_REJECT, S_FUTURE, S_OVERSIZED, S_FALLBACK = range(6)
# Pending bits: what Python still has to judge (or, PEND_DERIVE, derive) for an S_PENDING message.
PEND_IP, PEND_TEMPERATURE, PEND_TOP_P, PEND_DERIVE = 1, 2, 4, 8

# Error codes: how a field failed (``schemas.event_rules.FAILURES``; fast_json words them as pydantic does).
ERRORS = ("none", "missing", "int_type", "ge", "le", "str_type", "too_short", "too_long", "pattern", "literal",
          "bool_type", "float_type", "ts_type", "ts_bool", "ts_range", "ip")  # fmt: skip
(E_NONE, E_MISSING, E_INT_TYPE, E_GE, E_LE, E_STR_TYPE, E_TOO_SHORT, E_TOO_LONG, E_PATTERN, E_LITERAL,
 E_BOOL_TYPE, E_FLOAT_TYPE, E_TS_TYPE, E_TS_BOOL, E_TS_RANGE, E_IP) = range(len(ERRORS))  # fmt: skip
assert set(ERRORS[1:]) <= set(FAILURES)

# Per-field outcome of judging a value (kernel-internal).
R_OK, R_ERR, R_UNSURE, R_PENDING, R_DERIVE = range(5)


def _key_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open-addressing table: FNV-1a of a key → field index (verified against the name bytes)."""
    size = 128
    slots = np.full(size, -1, np.int64)
    names = [name.encode() for name in FIELD_NAMES]
    for f, name in enumerate(names):
        h = fnv1a(name) & (size - 1)
        while slots[h] >= 0:
            h = (h + 1) & (size - 1)
        slots[h] = f
    offsets = np.zeros(NF + 1, np.int64)
    offsets[1:] = np.cumsum([len(n) for n in names])
    # Padded so that 8-byte loads at the end of the last name stay inside the array.
    return slots, np.frombuffer(b"".join(names) + bytes(8), np.uint8).copy(), offsets


KEY_SLOTS, KEY_BYTES, KEY_OFFSETS = _key_table()
NET_BYTES = np.frombuffer("".join(NETWORK_TYPES).encode(), np.uint8).copy()
NET_OFFSETS = np.concatenate([[0], np.cumsum([len(t) for t in NETWORK_TYPES])]).astype(np.int64)


def _fingerprint() -> str:
    """A digest of every constant above: the values Numba froze into a cached scanner."""
    digest = hashlib.sha256()
    for name, value in sorted(globals().items()):
        if name.isupper() and not name.startswith("_") and name != "SPEC_FINGERPRINT":
            digest.update(name.encode() + (value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode()))
    return digest.hexdigest()


SPEC_FINGERPRINT = _fingerprint()
