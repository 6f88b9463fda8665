"""Version 2 of the account updates: every closed frame's calls, round-tripped, split, and read beside version 1."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pipeline.linking.messages import (
    ENVELOPE_VERSION,
    VERSION,
    AccountUpdates,
    MessageError,
    decode,
    pack_accounts,
)
from pipeline.linking.results import LinkResult, encode_result
from tests.pipeline.linking.sync_data import START_MINUTE, updates


def joined(messages: list[AccountUpdates]) -> list[tuple[str, int, int]]:
    return [(m.account[i], minute, calls) for m in messages
            for i, minute, calls in zip(m.frame_account, m.frame_minute, m.frame_calls, strict=True)]


def test_frames_round_trip_and_stay_with_their_account_when_a_message_is_split() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(2.0, (40, 6)) * (rng.random((40, 6)) < 0.7)
    (update,) = updates([f"org-{i:02d}" for i in range(40)], counts, per_message=6)
    expected = sorted((f"org-{i:02d}", START_MINUTE + t, int(counts[i, t])) for i, t in np.argwhere(counts))
    assert sorted(joined([update])) == expected  # zero-call minutes are not sent
    whole = [decode(v) for v in pack_accounts(update)]
    assert len(whole) == 1 and whole[0] == update  # type: ignore[comparison-overlap]
    parts = [decode(v) for v in pack_accounts(update, max_rows=25)]
    assert len(parts) > 5 and all(len(p.account) + len(p.frame_account) <= 25 for p in parts)  # type: ignore[union-attr]
    assert [a for p in parts for a in p.account] == update.account  # type: ignore[union-attr]
    assert sorted(joined(parts)) == expected  # type: ignore[arg-type]
    assert orjson.loads(pack_accounts(update)[0])["v"] == VERSION == 4


def test_a_version_1_message_reads_without_frames_and_bad_frames_are_refused() -> None:
    body = {"v": 1, "type": "accounts", "src": "old", "account": ["a", "b"], "calls": [1, 2], "ts": [5, 6],
            "score": [None, 1.0], "max_score": [None, 1.0], "best": [None, 1.0], "best_ts": [None, 6]}
    old = decode(orjson.dumps(body))
    assert isinstance(old, AccountUpdates) and old.account == ["a", "b"] and old.frame_minute == []
    v2 = {**body, "v": 2, "frame_account": [1], "frame_minute": [START_MINUTE], "frame_calls": [4]}
    assert decode(orjson.dumps(v2)).frame_calls == [4]  # type: ignore[union-attr]
    for bad, message in [({**v2, "frame_account": [2]}, "index"), ({**v2, "frame_calls": []}, "differ"),
                         ({**body, "v": 2}, "frame_account"), ({**v2, "v": 5}, "version-1/2/3/4"),
                         ({**v2, "v": 4, "wm": "10:05"}, "wm must be an event time"),
                         ({**v2, "v": 3, "frame_prompt_tokens": [9]}, "frame_completion_tokens")]:
        with pytest.raises(MessageError, match=message):
            decode(orjson.dumps(bad))


def test_link_results_keep_their_own_envelope_version() -> None:
    assert orjson.loads(encode_result(LinkResult(drained_sources=["x"])))["v"] == ENVELOPE_VERSION == 1
