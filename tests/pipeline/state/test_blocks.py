"""BlockIndex: stable places of entities (partition, ordinal), and the blocks they fall in."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.state.blocks import NONE, BlockIndex


def test_new_entities_take_the_next_ordinals_of_their_partition_in_slot_order() -> None:
    index = BlockIndex(4)
    assert index.place(np.array([0, 1, 2, 3, 4, 5]), np.array([0, 1, 0, 0, 0, 0])) == set()
    parts, ordinals = index.places(np.arange(6))
    assert parts.tolist() == [0, 1, 0, 0, 0, 0] and ordinals.tolist() == [0, 0, 1, 2, 3, 4]
    assert index.blocks_of(np.array([5, 1, 2])) == {(0, 1), (1, 0), (0, 0)}
    ords, slots = index.members(0, 0)
    assert ords.tolist() == [0, 1, 2, 3] and slots.tolist() == [0, 2, 3, 4]
    index.place(np.array([2, 6]), np.array([0, 0]))  # 2 keeps its place; 6 is new
    assert index.places(np.array([2, 6]))[1].tolist() == [1, 5]


def test_an_entity_moving_to_another_partition_leaves_its_block() -> None:
    index = BlockIndex(4)
    index.place(np.array([0, 1, 2]), np.array([0, 0, 0]))
    assert index.place(np.array([1]), np.array([2])) == {(0, 0)}  # block 0 of partition 0 lost a member
    assert index.members(0, 0)[1].tolist() == [0, 2]
    assert index.places(np.array([1]))[0].tolist() == [2] and index.members(2, 0)[1].tolist() == [1]


def test_restored_places_are_kept_and_new_ones_follow_them() -> None:
    index = BlockIndex(4)
    assert index.restore(3, np.array([8, 9, 11]), np.array([5, 6, 7])) == set()
    assert index.members(3, 2)[0].tolist() == [8, 9, 11]
    index.place(np.array([0]), np.array([3]))
    assert index.places(np.array([0]))[1].tolist() == [12]
    assert index.members(3, 0)[1].size == 0 and index.places(np.array([99]))[0].tolist() == [NONE]
    with pytest.raises(ValueError, match="taken"):
        index.restore(3, np.array([9]), np.array([1]))
    # The same entity in a second block: the later one wins, the first must be rewritten without it.
    assert index.restore(3, np.array([13]), np.array([5])) == {(3, 2)}
    assert index.members(3, 2)[1].tolist() == [6, 7]
