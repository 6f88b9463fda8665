from __future__ import annotations

import numpy as np
import pytest

from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import ObservationBatch, decode
from pipeline.linking.sent_pairs import SentPairs
from tests.support.link_builders import FakeBroker, make_batch
from tests.support.link_stages import PARTITIONS, Harness


def take(sent: SentPairs, pairs: list[tuple[str, str]]) -> list[bool]:
    keys = np.array([hash(pair) for pair in pairs], np.int64).view(np.uint64)  # any 64-bit pair identity
    return sent.take_new(keys).tolist()


def test_a_pair_is_new_once_and_other_pairs_stay_new() -> None:
    sent = SentPairs(slots_log2=16)
    assert take(sent, [("pay:c1", "a"), ("pay:c1", "b"), ("ua:x", "a")]) == [True, True, True]
    # Same pairs in another batch (other list positions): already sent. New combinations are not.
    assert take(sent, [("ua:x", "a"), ("pay:c1", "b"), ("ua:x", "b"), ("pay:c2", "a")]) == [False, False, True, True]
    assert sent.seen == 7 and sent.skipped == 2


def test_a_tiny_table_forgets_pairs_but_never_invents_one() -> None:
    # One bucket of two slots: every new pair evicts the older. Forgetting re-sends (harmless); nothing
    # unseen is ever reported as sent.
    sent = SentPairs(slots_log2=1)
    pairs = [(f"ip24:10.0.{i}", f"acct-{i}") for i in range(50)]
    assert all(take(sent, pairs))
    assert take(sent, pairs[-1:]) == [False]
    assert take(sent, pairs[:1]) == [True]


def _observation_rows(broker: FakeBroker) -> set[tuple[str, str]]:
    rows = set()
    for p in range(PARTITIONS):
        for value in broker.take("obs", p):
            msg = decode(value)
            if isinstance(msg, ObservationBatch):
                rows |= {(msg.features[f], msg.accounts[a]) for f, a in zip(msg.f, msg.a, strict=True)}
    return rows


def test_the_publisher_sends_each_pair_once_and_the_clusters_are_unchanged(config: LinkingConfig) -> None:
    batch = make_batch(["a", "b", "c"], ip=["10.1.1.1", "10.1.1.2", "10.9.9.9"], pay=["card", "card", ""])
    scores = {"a": 40.0, "b": 40.0, "c": 5.0}
    h = Harness(config)
    h.publish(batch, scores)
    first = _observation_rows(h.broker)
    assert ("pay:card", "a") in first and ("ip24:10.1.1", "b") in first
    h.publish(batch, scores)  # the same accounts with the same features: nothing new to say
    assert _observation_rows(h.broker) == set()
    h.publish(make_batch(["a", "d"], ip=["10.1.1.3", "10.1.1.4"], pay=["card", "card"]), {**scores, "d": 40.0})
    again = _observation_rows(h.broker)
    assert {a for f, a in again if f in ("pay:card", "ip24:10.1.1")} == {"d"}


def test_two_steady_pairs_sharing_a_bucket_both_stay_sent() -> None:
    # A direct-mapped table would evict one with the other on every batch; two ways keep both,
    # and the least recently used of the bucket is the one a third pair evicts.
    sent = SentPairs(slots_log2=1)
    assert take(sent, [("ua:x", "a")]) == [True]
    assert take(sent, [("ua:x", "b")]) == [True]
    for _ in range(3):
        assert take(sent, [("ua:x", "a")]) == [False]
        assert take(sent, [("ua:x", "b")]) == [False]
    assert take(sent, [("ua:x", "a")]) == [False]  # a is now the most recent
    assert take(sent, [("ua:x", "c")]) == [True]  # evicts b
    assert take(sent, [("ua:x", "a")]) == [False]
    assert take(sent, [("ua:x", "b")]) == [True]


def test_two_new_pairs_of_one_bucket_in_one_call_may_be_forgotten_but_are_both_new() -> None:
    sent = SentPairs(slots_log2=1)
    assert take(sent, [("ua:x", "a"), ("ua:x", "b")]) == [True, True]
    assert take(sent, [("ua:x", "b")]) == [False]  # the last written is kept


def test_a_table_without_a_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="slots_log2"):
        SentPairs(slots_log2=0)
