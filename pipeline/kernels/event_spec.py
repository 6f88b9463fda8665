"""The event contract as the JSON scanner sees it: fields, kinds, bounds, codes.

A copy of ``schemas.event.ApiCallEvent`` in arrays a Numba kernel can read, in the
model's field order (pydantic reports the first failing field in that order); a
test checks it against the model's JSON Schema, so the two cannot drift apart.
Also the scanner's output layout, message statuses and error codes. Plain
constants and NumPy arrays only.

Compiled into ``json_scan``'s cache: after editing, see the note there.
"""

from __future__ import annotations

import numpy as np

from pipeline.kernels.json_lex import fnv1a

# --- the contract's fields, in model order (pydantic reports errors in this order) ----
FIELD_NAMES: tuple[str, ...] = (
    "schema_version", "event_id", "ts", "account_id", "api_key_id", "client_ip", "asn", "network_type",
    "country", "user_agent", "endpoint", "model", "status", "latency_ms", "prompt_tokens",
    "completion_tokens", "reasoning_tokens", "prompt_hash", "prompt_simhash", "prompt_text", "topic",
    "elicits_reasoning", "temperature", "top_p", "n", "max_tokens", "logprobs", "top_logprobs",
    "logit_bias_count", "stream", "payment_fingerprint", "tls_fingerprint", "http2_fingerprint",
)  # fmt: skip
NF = len(FIELD_NAMES)
(F_SCHEMA_VERSION, F_EVENT_ID, F_TS, F_ACCOUNT_ID, F_API_KEY_ID, F_CLIENT_IP, F_ASN, F_NETWORK_TYPE,
 F_COUNTRY, F_USER_AGENT, F_ENDPOINT, F_MODEL, F_STATUS, F_LATENCY_MS, F_PROMPT_TOKENS,
 F_COMPLETION_TOKENS, F_REASONING_TOKENS, F_PROMPT_HASH, F_PROMPT_SIMHASH, F_PROMPT_TEXT, F_TOPIC,
 F_ELICITS_REASONING, F_TEMPERATURE, F_TOP_P, F_N, F_MAX_TOKENS, F_LOGPROBS, F_TOP_LOGPROBS,
 F_LOGIT_BIAS_COUNT, F_STREAM, F_PAYMENT_FINGERPRINT, F_TLS_FINGERPRINT, F_HTTP2_FINGERPRINT) = range(NF)  # fmt: skip

# Field kinds: how a value is judged.
K_VERSION, K_TS, K_STR, K_IP, K_INT, K_NET, K_COUNTRY, K_HEX, K_TEXT, K_BOOL, K_FLOAT = range(11)
U32 = 2**32 - 1
U16 = 2**16 - 1
TS_MIN_MS = 946_684_800_000  # schemas.event.TS_MIN_MS (a test checks they agree)
TS_MAX_MS = 4_102_444_800_000

# Per field: kind, required, nullable (Optional), lower/upper bound (numbers: the
# value; strings: the length in characters) and the output value when the field is
# absent or null (the DecodedBatch conventions: ``asn or 0``, top_logprobs -1).
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
    ("tls_fingerprint",     K_STR,     False, True,  0,     128,    0),  # judged, not output (not stored)
    ("http2_fingerprint",   K_STR,     False, True,  0,     256,    0),
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
# Columns unique per event: appended without looking for repeats.
STR_UNIQUE = np.array([f == F_EVENT_ID for f in STR_FIELDS], np.bool_)


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
