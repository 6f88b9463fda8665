"""The single-owner assignor, without Kafka: one member gets everything and keeps it."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from pipeline.linking.ownership import Claim, Decision, SingleOwnerAssignor, choose_owner

TOPICS = {"g-link-observations": {0, 1, 2, 3}, "g-link-edges": {0}}


class Cluster:
    """What ``assign`` reads of aiokafka's ClusterMetadata."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return TOPICS.get(topic)


def rebalance(members: dict[str, SingleOwnerAssignor]) -> str:
    """One group join: every member's metadata to the leader's assign, each assignment back; the owner."""
    leader = members[min(members)]
    metadata = {m: ConsumerProtocolMemberMetadata.decode(a.metadata(TOPICS).encode()) for m, a in members.items()}
    assignments = leader.assign(Cluster(), metadata)
    owners = [m for m, a in assignments.items() if a.partitions()]
    assert len(owners) == 1, assignments
    for member, assignor in members.items():
        assignor.on_assignment(type(assignments[member]).decode(assignments[member].encode()))
    assert sorted(assignments[owners[0]].partitions()) == sorted(
        (t, p) for t, ps in TOPICS.items() for p in ps)
    return owners[0]


def test_the_owner_keeps_every_partition_when_others_join_and_the_lowest_member_takes_over_when_it_leaves() -> None:
    group = {"m-5": SingleOwnerAssignor()}
    assert rebalance(group) == "m-5"
    group["m-1"] = SingleOwnerAssignor()  # a lower member id joins: the owner keeps its partitions
    assert rebalance(group) == "m-5"
    group["m-3"] = SingleOwnerAssignor()
    assert rebalance(group) == "m-5"
    assert group["m-1"].decision == Decision("m-5", 1, 3) and not group["m-1"].owns and group["m-5"].owns
    stale = group.pop("m-5")  # evicted: the lowest member takes over under a new epoch
    assert rebalance(group) == "m-1" and group["m-1"].epoch == 2
    group["m-5"] = stale  # rejoins still claiming epoch 1: the member that took over keeps them
    assert rebalance(group) == "m-1"
    assert not stale.owns and stale.epoch == 2


def test_choose_owner_prefers_the_newest_claim_then_the_lowest_id() -> None:
    assert choose_owner({"b": Claim(False, 3), "a": Claim(False, 1)}) == Decision("a", 4, 2)
    assert choose_owner({"a": Claim(True, 1), "b": Claim(True, 2), "c": Claim(True, 2)}) == Decision("b", 2, 3)
    assert Claim.decode(b"not json") == Claim(False, 0) and Claim.decode(b"") == Claim(False, 0)
    assert Decision.decode(b"{}") is None
