"""prompt_text derives the same hashes, topic and elicits_reasoning on every path.

The contract model (pydantic JSON path), the fast JSON path (whose scanner leaves
the derivation of such events to Python, ``PEND_DERIVE``) and the DWB1 producer
(which derives before encoding) must decode to the same values, and the text must
never leave the producer.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.decode.fast_json import PathCounts, decode_json_batch_fast
from pipeline.decode.pydantic_path import decode_json_batch_pydantic
from pipeline.producer.batch_encoder import encode_columns, encode_events
from schemas.event import ApiCallEvent
from schemas.prompt_derive import DERIVED_FIELDS, derive_from_prompt, derive_many
from tests.support.batched import FAR_FUTURE, assert_same_rows, decode_one
from tests.support.decode_cases import assert_same
from tests.support.events import EXAMPLE, MINIMAL

TEXTS = [
    "Solve the equation step by step and show your full reasoning.",
    "请一步一步地推导这个积分。",
    "Actúa como juez y califica la siguiente respuesta en una escala del 1 al 10.",
    "Переведи этот договор на английский язык.",
    "Schreibe eine Funktion in Python, die eine Liste sortiert.",
    "Quels sont les symptômes et le traitement de la grippe ?",
    "株式投資のリスクについて教えてください。",
    "이 시를 다시 써 주세요.",
    "Conte-me sobre a história de Lisboa, com muitos detalhes.",
    "اشرح خطوة بخطوة كيف تعمل الخلية.",
]
TOPICS = ["math", "math", "other", "translation", "code", "medical", "finance", "writing", "other", "other"]


def events() -> list[dict[str, Any]]:
    """Each text alone, and with some of the derived fields already given (those must be kept)."""
    out: list[dict[str, Any]] = []
    for i, text in enumerate(TEXTS):
        base = {**MINIMAL, "event_id": f"e{i}", "prompt_text": text}
        out.append(base)
        out.append({**base, "event_id": f"g{i}", "topic": "chat", "elicits_reasoning": False})
        out.append({**base, "event_id": f"h{i}", "prompt_hash": "0123456789abcdef", "topic": None})
    return out


def json_paths(evs: list[dict[str, Any]]) -> tuple[Any, Any, PathCounts]:
    n = len(evs)
    args = ([orjson.dumps(e) for e in evs], [b"key"] * n, [2] * n, [77] * n)
    fast, counts = decode_json_batch_fast(*args, max_message_bytes=65_536, max_ts_ms=FAR_FUTURE)
    slow = decode_json_batch_pydantic(*args, max_message_bytes=65_536, max_ts_ms=FAR_FUTURE)
    return fast, slow, counts


def test_all_three_paths_decode_the_same_derived_values() -> None:
    evs = events()
    fast, slow, counts = json_paths(evs)
    # every event had something to derive, and none needed pydantic for it
    assert (counts.pending, counts.fallback) == (len(evs), 0) and not fast.rejects
    assert_same(fast, slow)
    batched = decode_one(encode_events(evs))
    assert_same_rows(batched, slow)
    models = [ApiCallEvent.model_validate(e) for e in evs]
    assert list(batched.raw["topic"]) == [m.topic or "" for m in models]
    assert [bool(v) for v in batched.raw["elicits_reasoning"]] == [m.elicits_reasoning for m in models]
    # derived where absent, kept where given
    topics = batched.raw["topic"]
    assert list(topics[0:3]) == ["math", "chat", "math"]
    assert [bool(v) for v in batched.raw["elicits_reasoning"][0:3]] == [True, False, True]
    assert [topics[i] for i in range(0, len(evs), 3)] == TOPICS


def test_the_text_never_leaves_the_producer() -> None:
    value = encode_events(events())
    for text in TEXTS:
        assert text.encode() not in value
    assert b"Lisboa" not in value and "积分".encode() not in value


def test_columns_input_derives_only_missing_values() -> None:
    n = len(TEXTS)
    columns: dict[str, Any] = {k: [v] * n for k, v in MINIMAL.items()}
    columns["event_id"] = [f"c{i}" for i in range(n)]
    columns["prompt_text"] = TEXTS
    columns["topic"] = ["chat", *[None] * (n - 1)]
    via_columns = decode_one(encode_columns(columns))
    via_events = decode_one(encode_events([{**MINIMAL, "event_id": f"c{i}", "prompt_text": t,
                                            **({"topic": "chat"} if i == 0 else {})}
                                           for i, t in enumerate(TEXTS)]))
    assert_same_rows(via_columns, via_events)
    assert via_columns.raw["topic"][0] == "chat" and via_columns.raw["topic"][1] == "math"


def test_classifier_fields_without_text_keep_the_fast_path() -> None:
    evs = [{**EXAMPLE, "event_id": f"x{i}"} for i in range(50)]
    fast, slow, counts = json_paths(evs)
    assert_same(fast, slow)
    assert (counts.fast, counts.fallback) == (50, 0)


_WORDS = st.sampled_from([*TEXTS, "step by step", "paso a paso", "act as a grader", "积分", "x", "é", "_", "1",
                          "ß", "İ", "\t", "\n", "\u2028", "\u00a0", "\x00", "", "Σ", "\U0001f600"])


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.one_of(st.text(max_size=80), st.lists(_WORDS, max_size=8).map(" ".join),
                                st.lists(_WORDS, max_size=8).map("".join)), max_size=12),
       fields=st.lists(st.sampled_from(DERIVED_FIELDS), unique=True))
def test_derive_many_equals_derive_from_prompt(texts: list[str], fields: list[str]) -> None:
    """The batch entry point (one scan over all texts, SimHash votes in NumPy) gives each text's own values."""
    got = derive_many(texts, fields)
    assert list(got) == fields
    for i, text in enumerate(texts):
        assert {name: got[name][i] for name in fields} == derive_from_prompt(text, fields)


def test_derive_many_on_long_texts_and_many_shingles() -> None:
    texts = [" ".join(f"w{i % 97} step by step" for i in range(30_000)), "", TEXTS[0] * 50, *TEXTS]
    got = derive_many(texts, DERIVED_FIELDS)  # the first alone has more shingles than one vote block
    assert [{name: got[name][i] for name in DERIVED_FIELDS} for i in range(len(texts))] == [
        derive_from_prompt(text, DERIVED_FIELDS) for text in texts]
