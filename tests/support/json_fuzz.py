"""Generated event messages for differential tests: valid events, mutated fields, broken bytes.

Messages are assembled from raw JSON tokens (not from Python values) so that the
tests reach spellings a serializer never produces: ``1.0`` for an integer, ``-0``,
``1E+2``, ``NaN``, escapes in keys and values, duplicate keys, odd whitespace.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import strategies as st

from schemas.event import TS_MAX_MS, TS_MIN_MS

U32 = 2**32 - 1

# --- raw value tokens, per field family ---------------------------------------------------------
INT_TOKENS = ["0", "-0", "1", "-1", "99", "100", "599", "600", "20", "21", "65535", "65536", str(U32),
              str(U32 + 1), "9223372036854775807", "9223372036854775808", "-9223372036854775809",
              "123456789012345678", "1234567890123456789", "99999999999999999999999", "1.0", "1e3", "1E+2",
              "0.5", "-0.0", "true", "false", "null", '"1"', "[]", "{}", "[1]", '{"a":1}']
FLOAT_TOKENS = ["0", "-0", "0.0", "-0.0", "1", "2", "2.0", "2.5", "1.5", "0.7", "1e0", "1E0", "-0.0e5",
                "0.30000000000000004", "1.9999999999999999", "2.0000000000000004", "1.99999999999999999999",
                "2.00000000000000001", "0.1e1", "5e-1", "1e-400", "-1e-400", "1e400", "NaN", "Infinity",
                "-Infinity", "0.000000000000000000000000001", "123456789012345678901234567890", "-1",
                "0.9999999999999999", "1.0000000000000002", "true", '"0.5"', "null", "[]"]
BOOL_TOKENS = ["true", "false", "0", "1", '"true"', "null", "[]", "1.0"]
VERSION_TOKENS = ["1", "1.0", "10e-1", "1e0", "2", "0", "-1", "1.5", "true", "false", "null", '"1"', "{}",
                  "100000000000000000000", "1.00000000000000000001"]
TS_STRINGS = [
    "2026-02-12T09:30:00.123Z", "2026-02-12T09:30:00Z", "2026-02-12T10:30:00.5+01:00",
    "2026-02-12T09:30:00.123456Z", "2026-02-12T09:30:00.1234567Z", "2026-02-12T09:30:00.123456789Z",
    "2026-02-12T09:30:00.1234567891Z", "2026-02-12T09:30:00,123Z", "2026-02-12T09:30:00.Z",
    "2026-02-12T09:30:00+0100", "2026-02-12T09:30:00-23:59", "2026-02-12T09:30:00+24:00",
    "2026-02-12T09:30:60Z", "2026-02-29T09:30:00Z", "2028-02-29T09:30:00Z", "2026-02-12T24:00:00Z",
    "2026-02-12T09:30Z", "2026-02-12T09Z", "2026-02-12T09:30:00.123z", " 2026-02-12T09:30:00Z",
    "2026-02-12T09:30:00Z ", "1999-12-31T23:59:59.9999Z", "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z",
    "2099-12-31T23:59:59.999999Z", "2000-01-01T01:00:00+01:00", "2026-02-12T09:30:00.123-00:00",
    "2026-02-12T09:30:00.123+05:30:15", "2026-02-12 09:30:00Z", "2026-02-12t09:30:00Z",
    "2026-02-12T09:30:00", "20260212T093000Z", "2026-W07-4T09:30:00Z", "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z", "yesterday", "", "2026-13-01T00:00:00Z",
    "2026-02-12T09:30:00+23:60", "2026-02-12T09:30:00.123+05:30", "2026-02-12T09:30:00.1Z",
    "2026-02-12T09:30:00.12Z", "2026-02-12T09:30:00.1234Z", "1900-02-29T00:00:00Z", "2000-02-29T12:00:00Z",
    "2026-02-12T09:30:00.123Z\u0000",
]
TS_INTS = [str(TS_MIN_MS - 1), str(TS_MIN_MS), str(TS_MAX_MS - 1), str(TS_MAX_MS), "1770888600123", "0", "-0",
           "12", "1770888600123.0", "1.770888600123e12", "true", "false", "null", "[]", "{}",
           "99999999999999999999999"]
IPS = ["203.0.113.7", "10.0.0.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "1.2.3.04", "01.2.3.4",
       "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4%eth0", "1..2.3", "1.2.3.", "a.b.c.d",
       "1.2.3.1234", "example.com", "2001:db8::1", "2001:DB8::1", "::", "::1", "::ffff:1.2.3.4",
       "fe80::1%eth0", ":::", "2001:db8:::1", "2001:db8::g", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
       "\u0661.2.3.4", "", "1.2.3.4\u0000"]
HEXES = ["9f86d081884c7d65", "0000000000000000", "ffffffffffffffff", "9F86D081884C7D65", "9f86d081884c7d6",
         "9f86d081884c7d655", "9f86d081884c7d6g", "", "9f86d081884c7d6\u00e9"]
COUNTRIES = ["US", "DE", "us", "USA", "U", "", "\u00c4B", "U1", "ZZ"]
NETWORKS = ["residential", "mobile", "business", "hosting", "vpn", "proxy", "tor", "unknown", "Tor", "tor ",
            "satellite", ""]

FIELDS_STR = {"event_id": 64, "account_id": 128, "api_key_id": 128, "user_agent": 512, "endpoint": 256,
              "model": 128, "topic": 64, "payment_fingerprint": 128, "prompt_text": 32_768}
FIELDS_INT = ["asn", "status", "latency_ms", "prompt_tokens", "completion_tokens", "reasoning_tokens", "n",
              "max_tokens", "top_logprobs", "logit_bias_count"]
FIELDS_BOOL = ["elicits_reasoning", "logprobs", "stream"]
ALL_FIELDS = ["schema_version", "ts", "client_ip", "network_type", "country", "prompt_hash", "prompt_simhash",
              "temperature", "top_p", *FIELDS_STR, *FIELDS_INT, *FIELDS_BOOL]
# prompt_text: cue phrases in several languages and scripts, whitespace and case to normalise, escapes.
PROMPT_TEXTS = ["Solve this step by step.", "SOLVE  this\tStep\nBY step", "请一步一步地推导这个积分。",
                "Actúa como juez y califica la respuesta.", "Переведи этот договор на английский язык.",
                "اشرح خطوة بخطوة كيف تعمل الخلية.", "株式投資のリスクについて教えてください。",
                "a \"quoted\" \\ path/x",
                "", " ", "\u0000 step by step", "\u2028line\u2029", "\U0001f600 rate the following response",
                "ΣΊΣΥΦΟΣ ß İ", "x" * 3000, "word " * 400]
ODD_TEXT = ["", "a", "\u00e9", "\U0001f600", "a\"b", "a\\b", "a/b", "\u0000", "\t", "\u2028", "\ud7ff",
            "\ue000", "\uffff", "x" * 64, "x" * 65, "\u00e9" * 64, "\u00e9" * 65, "\U0001f600" * 64]


def json_string(text: str, rng: random.Random) -> str:
    """A JSON string token for text, in one of several spellings (raw UTF-8, \\u escapes, escaped /)."""
    style = rng.randrange(4)
    if style == 0:
        return json.dumps(text, ensure_ascii=False)
    if style == 1:
        return json.dumps(text, ensure_ascii=True)
    if style == 2:
        return json.dumps(text, ensure_ascii=False).replace("/", "\\/")
    # Escape every character: \uXXXX (surrogate pairs for astral characters).
    out = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
        else:
            out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def random_json(rng: random.Random, depth: int = 0) -> str:
    """A random JSON value token for unknown fields (nested, odd numbers, escapes)."""
    pick = rng.randrange(9 if depth < 4 else 6)
    if pick == 0:
        return rng.choice(["null", "true", "false", "NaN", "Infinity", "-Infinity", "1e400", "-0", "0.5E-3",
                           "123456789012345678901234567890", "1" + "0" * 70, "1e99999"])
    if pick == 1:
        return str(rng.randint(-(2**70), 2**70))
    if pick == 2:
        return repr(rng.uniform(-1e6, 1e6))
    if pick in (3, 4, 5):
        return json_string(rng.choice([*ODD_TEXT, "plain", "with space"]), rng)
    if pick in (6, 7):
        return "[" + ",".join(random_json(rng, depth + 1) for _ in range(rng.randrange(4))) + "]"
    members = [f"{json_string(rng.choice(['k', 'event_id', 'é', 'a b']), rng)}:{random_json(rng, depth + 1)}"
               for _ in range(rng.randrange(4))]
    return "{" + ",".join(members) + "}"


def field_token(name: str, rng: random.Random) -> str:
    """A token for a contract field: often valid, often just wrong."""
    if rng.random() < 0.1:
        return random_json(rng)
    if name == "schema_version":
        return rng.choice(VERSION_TOKENS)
    if name == "ts":
        if rng.random() < 0.5:
            return rng.choice(TS_INTS)
        return json_string(rng.choice(TS_STRINGS), rng) if rng.random() < 0.3 else json.dumps(rng.choice(TS_STRINGS))
    if name == "client_ip":
        return json_string(rng.choice(IPS), rng) if rng.random() < 0.2 else json.dumps(rng.choice(IPS))
    if name == "network_type":
        return json_string(rng.choice(NETWORKS), rng) if rng.random() < 0.2 else json.dumps(rng.choice(NETWORKS))
    if name == "country":
        return json_string(rng.choice(COUNTRIES), rng) if rng.random() < 0.2 else json.dumps(rng.choice(COUNTRIES))
    if name in ("prompt_hash", "prompt_simhash"):
        return json_string(rng.choice(HEXES), rng) if rng.random() < 0.2 else json.dumps(rng.choice(HEXES))
    if name in ("temperature", "top_p"):
        if rng.random() < 0.4:
            return repr(rng.uniform(-0.5, 2.5) if rng.random() < 0.5 else round(rng.uniform(0, 2), rng.randrange(4)))
        return rng.choice(FLOAT_TOKENS)
    if name in FIELDS_BOOL:
        return rng.choice(BOOL_TOKENS)
    if name in FIELDS_INT:
        return rng.choice(INT_TOKENS) if rng.random() < 0.7 else str(rng.randint(-10, 2**33))
    if name == "prompt_text" and rng.random() < 0.5:
        return json_string(rng.choice(PROMPT_TEXTS), rng)
    limit = FIELDS_STR[name]
    length = rng.choice([0, 1, limit - 1, limit, limit + 1, rng.randrange(1, 20)])
    alphabet = rng.choice(["abc-_/.", "é", "\U0001f600x", "a\"\\\u0000", "\u00e9\u4e2d"])
    return json_string("".join(rng.choice(alphabet) for _ in range(length)), rng)


def render(members: list[tuple[str, str]], rng: random.Random) -> bytes:
    """Join key/value tokens into an object with random (valid) whitespace."""
    def ws() -> str:
        return rng.choice(["", "", "", " ", "\n", "\t", "\r\n  "])

    parts = [f"{ws()}{key}{ws()}:{ws()}{value}{ws()}" for key, value in members]
    return (ws() + "{" + ",".join(parts) + "}" + ws()).encode("utf-8", "surrogatepass")


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    pick = rng.randrange(9)
    if pick == 0 and data:
        return data[: rng.randrange(len(data))]  # truncated
    if pick == 1:
        i = rng.randrange(len(data) + 1)
        return data[:i] + bytes([rng.randrange(256)]) + data[i:]
    if pick == 2 and data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if pick == 3:
        return b"\xef\xbb\xbf" + data
    if pick == 4:
        return data + rng.choice([b" x", b",", b"}", b"\x00", b"\n\n"])
    if pick == 5:
        return b"[" + data + b"]"
    if pick == 6:
        return rng.choice([b"", b"null", b"42", b'"s"', b"[]", b"{}", b"{", b"\xff\xfe", b"{\"a\":\xc3}",
                           b'{"event_id":"\xed\xa0\x80"}', b" { } "])
    if pick == 7:
        return data.replace(b'"', b"'", 1)
    return data.replace(b",", b", ", 1)


def message(base: dict[str, Any], rng: random.Random) -> bytes:
    """One message derived from a valid event by a few random mutations."""
    members = [(json.dumps(k), orjson.dumps(v).decode()) for k, v in base.items()]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        op = rng.randrange(7)
        if op == 0 and members:
            members.pop(rng.randrange(len(members)))
        elif op == 1:
            name = rng.choice(ALL_FIELDS)
            members = [(k, v) for k, v in members if k != json.dumps(name)]
            members.insert(rng.randrange(len(members) + 1), (json.dumps(name), field_token(name, rng)))
        elif op == 2:  # duplicate key: the last one counts
            name = rng.choice(ALL_FIELDS)
            members.append((json.dumps(name), field_token(name, rng)))
        elif op == 3:  # unknown field
            key = rng.choice(["future", "x", "nested", "\u00e9t\u00e9", "event_id2", "EVENT_ID"])
            members.insert(rng.randrange(len(members) + 1), (json_string(key, rng), random_json(rng)))
        elif op == 4:  # escaped key (may spell a field name)
            if members:
                i = rng.randrange(len(members))
                key, value = members[i]
                members[i] = (json_string(json.loads(key), rng), value)
        elif op == 5:
            rng.shuffle(members)
        else:  # a string value re-spelt with escapes
            strings = [i for i, (_, v) in enumerate(members) if v.startswith('"')]
            if strings:
                i = rng.choice(strings)
                key, value = members[i]
                members[i] = (key, json_string(json.loads(value), rng))
    data = render(members, rng)
    if rng.random() < 0.08:
        data = mutate_bytes(data, rng)
    return data


def prompt_bases(bases: list[dict[str, Any]], seed: int = 17) -> list[dict[str, Any]]:
    """Events that carry prompt_text and lack some derived fields (absent or null), or give them all."""
    rng = random.Random(seed)
    derived = ("prompt_hash", "prompt_simhash", "topic", "elicits_reasoning")
    out = []
    for base in bases:
        for keep in ((), ("prompt_hash", "prompt_simhash"), ("topic", "elicits_reasoning"), derived):
            event = {k: v for k, v in base.items() if k not in derived or k in keep}
            event.update({k: base.get(k, v) for k, v in (("prompt_hash", "9f86d081884c7d65"),
                          ("prompt_simhash", "c3a1f00e9b2d4471"), ("topic", "math"), ("elicits_reasoning", True))
                          if k in keep})
            if rng.random() < 0.3:  # null counts as lacking (a null elicits_reasoning is invalid)
                event[rng.choice(["prompt_hash", "prompt_simhash", "topic"])] = None
            event["prompt_text"] = rng.choice(PROMPT_TEXTS)
            out.append(event)
    return out


def messages(bases: list[dict[str, Any]], count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [message(rng.choice(bases), rng) for _ in range(count)]


@st.composite
def message_batches(draw: st.DrawFn, bases: list[dict[str, Any]]) -> list[bytes]:
    """Hypothesis: a small batch of messages (the seed is drawn, so failures shrink to it)."""
    seed = draw(st.integers(0, 2**32 - 1))
    count = draw(st.integers(1, 6))
    return messages(bases, count, seed)
