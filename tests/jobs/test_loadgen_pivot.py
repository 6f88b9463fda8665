"""The 2026 campaign patterns in the load generator: a pivot to a newly released model and
non-English capability sweeps, each beside its hard negative (early adopters, a non-English app)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import orjson
import pytest

from jobs.loadgen import ARCHETYPES, ATTACKS, BENIGN, DEFAULT_MIX, NEW_MODEL, GeneratedEvent, ScenarioConfig, generate
from jobs.loadgen.archetypes import Pivot
from jobs.loadgen.population import Account
from jobs.loadgen.scenario import population
from jobs.loadgen.texts import LANGUAGES, TEXT_TOPICS, frames, prompt_text, reasoning_requests
from jobs.loadgen.variation import RANGES, mix_factors, varied_archetypes
from schemas.event import ApiCallEvent
from tests.support.generated import near_duplicate_share

NEW_ARCHETYPES = ("model_pivot", "early_adopter", "multilingual_sweeper", "non_english_app")
MIX = {"model_pivot": 2, "early_adopter": 4, "multilingual_sweeper": 2, "non_english_app": 4, "chat_app": 4}
# Four hours from 10:00 UTC, the model released after two.
CONFIG = ScenarioConfig(seed=21, start_ms=1_770_890_400_000, duration_s=4 * 3600, rate_eps=4, mix=MIX)
EMBEDDINGS = "/v1/embeddings"


@pytest.fixture(scope="module")
def events() -> list[GeneratedEvent]:
    return list(generate(CONFIG))


@pytest.fixture(scope="module")
def accounts(events: list[GeneratedEvent]) -> dict[str, tuple[Account, list[GeneratedEvent]]]:
    grouped: dict[str, list[GeneratedEvent]] = defaultdict(list)
    for e in events:
        grouped[e["account_id"]].append(e)
    return {a.account_id: (a, grouped[a.account_id]) for a in population(CONFIG).accounts}


def of(accounts: dict[str, tuple[Account, list[GeneratedEvent]]], name: str) -> list[tuple[Account, list]]:
    found = [(a, evs) for a, evs in accounts.values() if a.archetype.name == name]
    assert found and all(evs for _, evs in found), name
    return found


def new_share(evs: Iterable[GeneratedEvent]) -> float:
    generation = [e for e in evs if e["endpoint"] != EMBEDDINGS]
    return sum(e["model"] == NEW_MODEL for e in generation) / len(generation)


def decoded(evs: list[GeneratedEvent], limit: int = 400) -> list[ApiCallEvent]:
    return [ApiCallEvent.model_validate_json(orjson.dumps(e)) for e in evs[:limit]]


def test_the_new_archetypes_are_in_the_default_mix_and_labelled() -> None:
    assert {"model_pivot", "multilingual_sweeper"} <= set(ATTACKS)
    assert {"early_adopter", "non_english_app"} <= set(BENIGN)
    assert all(DEFAULT_MIX[n] == 2 for n in ("model_pivot", "multilingual_sweeper"))
    assert all(3 <= DEFAULT_MIX[n] <= 4 for n in ("early_adopter", "non_english_app"))
    assert {n for n, a in ARCHETYPES.items() if a.pivot} == {"model_pivot", "early_adopter"}
    assert {n for n, a in ARCHETYPES.items() if a.content.languages} == {"multilingual_sweeper", "non_english_app"}


# ------------------------------------------------------------------ the model released mid-scenario


def test_nobody_calls_the_new_model_before_its_release(events: list[GeneratedEvent]) -> None:
    release_ms = CONFIG.start_ms + CONFIG.release_s * 1000
    assert CONFIG.release_s == CONFIG.duration_s / 2
    on_new = [e["ts"] for e in events if e["model"] == NEW_MODEL]
    assert on_new and min(on_new) >= release_ms
    # Nor in the default mix, nor in a varied scenario, nor when the release is at the very end.
    for config in (ScenarioConfig(seed=4, duration_s=7200, rate_eps=20),
                   CONFIG.model_copy(update={"vary_seed": 8}),
                   CONFIG.model_copy(update={"release_fraction": 1.0, "duration_s": 3600})):
        rel = config.start_ms + config.release_s * 1000
        assert all(e["ts"] >= rel for e in generate(config) if e["model"] == NEW_MODEL)


def test_only_pivoting_archetypes_use_the_new_model(accounts: dict) -> None:
    for account, evs in accounts.values():
        if account.archetype.pivot is None:
            assert all(e["model"] != NEW_MODEL for e in evs), account.archetype.name


@pytest.mark.parametrize("name", ["model_pivot", "early_adopter"])
def test_pivot_moves_the_drawn_share_soon_after_release(accounts: dict, name: str) -> None:
    pivot: Pivot = ARCHETYPES[name].pivot
    release_ms = CONFIG.start_ms + CONFIG.release_s * 1000
    for account, evs in of(accounts, name):
        assert pivot.lag_s[0] <= account.pivot_lag_s <= pivot.lag_s[1]
        assert pivot.share[0] <= account.pivot_share <= pivot.share[1]
        moved_ms = release_ms + account.pivot_lag_s * 1000
        after = [e for e in evs if e["ts"] >= moved_ms]
        trying = [e for e in evs if release_ms <= e["ts"] < moved_ms]
        assert len(after) > 50
        assert abs(new_share(after) - account.pivot_share) < 0.12, (new_share(after), account.pivot_share)
        if len(trying) > 50:
            assert new_share(trying) < 0.15  # a trickle of trials before the move
    # The campaign moves most of its traffic within about an hour and a half; so do early adopters.
    assert pivot.lag_s[1] <= 5400
    low = 0.7 if name == "model_pivot" else 0.5
    assert pivot.share[0] >= low


def test_the_pivot_and_the_early_adopter_differ_in_what_they_take_not_in_the_move(accounts: dict) -> None:
    def mean_of(name: str, field: str) -> float:
        return float(np.mean([e[field] for _, evs in of(accounts, name) for e in evs if e["status"] == 200]))

    pivot, adopter = ARCHETYPES["model_pivot"].pivot, ARCHETYPES["early_adopter"].pivot
    assert pivot is not None and adopter is not None
    assert pivot.lag_s == adopter.lag_s  # the same timing: moving is not the evidence
    assert mean_of("model_pivot", "completion_tokens") > 2 * mean_of("early_adopter", "completion_tokens")
    assert mean_of("model_pivot", "reasoning_tokens") > 3 * mean_of("early_adopter", "reasoning_tokens")
    reasons = {name: np.mean([e["elicits_reasoning"] for _, evs in of(accounts, name) for e in evs])
               for name in ("model_pivot", "early_adopter")}
    assert reasons["model_pivot"] > 0.4 > 0.2 > reasons["early_adopter"]


def test_the_new_model_spends_reasoning_tokens(accounts: dict) -> None:
    answered = [e for _, evs in of(accounts, "model_pivot") for e in evs if e["status"] == 200]
    on_new = [e for e in answered if e["model"] == NEW_MODEL]
    assert on_new and all(e["reasoning_tokens"] > 0 for e in on_new)


# ------------------------------------------------------------------ prompts in other languages


def test_text_accounts_send_text_and_no_classification(accounts: dict) -> None:
    for account, evs in accounts.values():
        writes = bool(account.archetype.content.languages)
        assert (account.language is not None) == writes
        for e in evs:
            assert ("prompt_text" in e) == writes
            assert ("topic" in e) == ("elicits_reasoning" in e) == (not writes)
    languages = {a.language for a, _ in accounts.values() if a.language}
    assert len(languages) >= 3 and languages <= set(LANGUAGES) and "en" not in languages


def test_a_repeated_prompt_repeats_its_text(accounts: dict) -> None:
    for _, evs in of(accounts, "non_english_app"):
        texts: dict[str, set[str]] = defaultdict(set)
        for e in evs:
            texts[e["prompt_hash"]].add(e["prompt_text"])
        assert all(len(t) == 1 for t in texts.values())
        assert len(texts) < len(evs)  # some prompts were repeated


def test_a_multilingual_sweep_covers_several_derived_topics_and_asks_for_reasoning(accounts: dict) -> None:
    for account, evs in of(accounts, "multilingual_sweeper"):
        parsed = decoded(evs)
        topics = Counter(p.topic for p in parsed)
        # Coverage measured on the topics the pipeline derives from non-English text.
        assert len(topics) >= 5, (account.language, topics)
        assert set(topics) <= TEXT_TOPICS
        assert max(topics.values()) < 0.5 * len(parsed)
        assert np.mean([p.elicits_reasoning for p in parsed]) > 0.4
        # A sweep: distinct prompts from a few templates, answers far longer than the prompts.
        assert len({e["prompt_hash"] for e in evs}) / len(evs) > 0.95
        assert near_duplicate_share(evs) > 0.8


def test_a_non_english_app_gives_long_answers_but_is_not_a_sweep(accounts: dict) -> None:
    for account, evs in of(accounts, "non_english_app"):
        parsed = decoded(evs)
        topics = Counter(p.topic for p in parsed)
        assert topics.most_common(1)[0][0] == "other"  # mostly everyday requests
        assert np.mean([p.elicits_reasoning for p in parsed]) < 0.2
        ok = [e for e in evs if e["status"] == 200]
        assert np.median([e["completion_tokens"] for e in ok]) > 3 * np.median([e["prompt_tokens"] for e in ok])
        assert near_duplicate_share(evs) < 0.6, account.language


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_frame_derives_its_topic_and_reasoning_in_every_language(language: str) -> None:
    for topic in (*sorted(TEXT_TOPICS), "chat"):
        for index in range(len(frames(language, topic))):
            for reason in (False, True):
                for bits in (0, 0x0123_4567_89AB_CDEF, 2**64 - 1):
                    phash = bits - bits % len(frames(language, topic)) + index  # picks frame ``index``
                    parsed = ApiCallEvent.model_validate({
                        "event_id": "e", "ts": CONFIG.start_ms, "account_id": "a", "api_key_id": "k",
                        "client_ip": "10.0.0.1", "endpoint": "/v1/chat/completions", "model": "m", "status": 200,
                        "prompt_tokens": 1, "completion_tokens": 1,
                        "prompt_text": prompt_text(language, topic, reason, phash)})
                    assert parsed.topic == (topic if topic in TEXT_TOPICS else "other"), (language, topic, index)
                    assert parsed.elicits_reasoning is reason, (language, topic, index)
    assert len(reasoning_requests(language)) >= 2


# ------------------------------------------------------------------ the generalisation check


def test_variation_moves_the_pivot_within_its_ranges_and_keeps_the_languages() -> None:
    for seed in range(12):
        varied = varied_archetypes(seed)
        for name in NEW_ARCHETYPES:
            v, a = varied[name], ARCHETYPES[name]
            assert v.content.languages == a.content.languages
            assert (v.pivot is None) == (a.pivot is None)
            if a.pivot is None or v.pivot is None:
                continue
            assert v.pivot != a.pivot
            assert 0 < v.pivot.share[0] <= v.pivot.share[1] < 1
            shift = [np.log(x / (1 - x)) - np.log(y / (1 - y)) for x, y in zip(v.pivot.share, a.pivot.share,
                                                                                 strict=True)]
            assert abs(shift[0] - shift[1]) < 1e-9 and abs(shift[0]) <= RANGES.log_odds + 1e-9
            for lag, base in zip(v.pivot.lag_s, a.pivot.lag_s, strict=True):
                assert base / RANGES.pivot_lag - 1 <= lag <= base * RANGES.pivot_lag + 1
            assert 0 < v.pivot.trial < 1
        assert varied["model_pivot"].pivot.share[0] > 0.45  # still moves most of its traffic


def test_each_archetype_varies_from_its_own_stream() -> None:
    # Adding archetypes leaves the variation of the others as it was.
    subset = {name: ARCHETYPES[name] for name in ("chat_app", "model_pivot")}
    whole = varied_archetypes(5)
    assert dict(varied_archetypes(5, base=subset)) == {name: whole[name] for name in subset}
    assert mix_factors(5, subset) == {name: mix_factors(5, ARCHETYPES)[name] for name in subset}
