"""Per-API-key frames, kept only where they differ from the account's.

While an account has used exactly one API key, and that key no other account, the key's rows are
derived from the account's closed frames; once that stops holding, the account's state is copied into
a key slot before the batch is folded. The key store still sees every event (``WATERMARK_ONLY`` for
derived keys), so its watermarks stay exact. A derived key's name is checkpointed in its account's
extras (``API_KEY_EXTRA``). docs/signals.md, "State per account".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from pipeline.kernels.layout import WATERMARK_ONLY
from pipeline.state.accounts import AccountRegistry
from pipeline.state.frames import ClosedFrames, FrameStore

NO_KEY = -1  # account_key: the account has used no key yet
SPLIT = -2  # account_key: the account's keys have frames of their own
OWN_FRAMES_NONE = -1  # key_slot: the key has no slot of its own (derived, or not decided yet)
# Account extra naming its only key, whose frames are the account's. Absent: its keys have their own.
API_KEY_EXTRA = "api_key"


def _grown(arr: np.ndarray, n: int, fill: int) -> np.ndarray:
    """``arr`` with room for ``n`` entries (capacity doubles), new entries ``fill``."""
    if n <= arr.shape[0]:
        return arr
    out = np.full(max(n, 2 * arr.shape[0], 1024), fill, arr.dtype)
    out[: arr.shape[0]] = arr
    return out


def _single(values: np.ndarray) -> np.ndarray:
    """Per entry: whether its value occurs only once in ``values``."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


class ApiKeyFrames:
    """Which API keys share their account's frames, and the frames of those that do not."""

    def __init__(self, accounts: AccountRegistry, frames: FrameStore) -> None:
        self.accounts = accounts
        self.frames = frames  # keys with frames of their own, by slot of ``split``
        self.keys = AccountRegistry()  # every key seen, by key id (first seen first)
        self.key_account: list[str] = []  # key id -> the account it was first seen with
        self.key_slot = np.full(0, OWN_FRAMES_NONE, np.int32)  # key id -> slot in ``frames``
        self.account_key = np.full(0, NO_KEY, np.int32)  # account slot -> key id of its only key, NO_KEY, SPLIT
        self.split = AccountRegistry()  # keys with frames of their own (names are key ids' names)
        self.split_key: list[int] = []  # slot in ``frames`` -> key id

    def __len__(self) -> int:
        return len(self.keys)

    # --- per batch -------------------------------------------------------------------
    def route(self, account_slots: np.ndarray, key_names: Sequence[str], account_names: Sequence[str],
              account_frames: FrameStore) -> np.ndarray:
        """Key-store kernel slot per event (``WATERMARK_ONLY`` where the key's frames are its account's).

        Call before folding the batch into either store: a key leaving its account's
        frames gets a copy of the account's state as it is before the batch.
        """
        known = len(self.keys)
        key_ids = self.keys.slots_for(key_names)
        if len(self.keys) > known:
            first_seen: dict[int, str] = {}
            for k, account in zip(key_ids.tolist(), account_names, strict=True):
                if k >= known:
                    first_seen.setdefault(k, account)
            self.key_account.extend(first_seen[k] for k in range(known, len(self.keys)))
        self.key_slot = _grown(self.key_slot, len(self.keys), OWN_FRAMES_NONE)
        self.account_key = _grown(self.account_key, len(self.accounts), NO_KEY)
        account_frames.ensure_slots(len(self.accounts))  # a new account's state may be copied or marked
        own = self.account_key[account_slots]
        # Nothing to decide for an account's only key, nor for a split account's split key.
        pending = (own != key_ids) & ~((own == SPLIT) & (self.key_slot[key_ids] >= 0))
        if pending.any():
            at = np.flatnonzero(pending)
            accounts, keys = account_slots[at], key_ids[at]
            _, first = np.unique((accounts.astype(np.int64) << 32) | keys.astype(np.int64), return_index=True)
            accounts, keys = accounts[first], keys[first]
            # The common case at once: a new account with one new key that no other account used.
            lone = (self.account_key[accounts] == NO_KEY) & (keys >= known) & _single(accounts) & _single(keys)
            self.account_key[accounts[lone]] = keys[lone]
            changed = accounts[lone].tolist()
            for e in np.sort(at[first[~lone]]).tolist():  # the rest in the order the pairs first occur
                self._decide(int(account_slots[e]), int(key_ids[e]), known, account_frames, changed)
            if changed:
                account_frames.mark_dirty(np.array(changed, np.int64))  # their extras changed
        slots = self.key_slot[key_ids]
        return np.where(slots >= 0, slots, WATERMARK_ONLY).astype(np.int32)

    def _owner(self, key: int) -> int | None:
        """The account whose frames are ``key``'s, if any."""
        if self.key_slot[key] >= 0:
            return None
        account = self.accounts.slot_of(self.key_account[key])
        return account if account is not None and self.account_key[account] == key else None

    def _decide(self, account: int, key: int, known: int, account_frames: FrameStore, changed: list[int]) -> None:
        """Settle the pair (account, key) of this batch; keys from ``known`` on are new in it."""
        if self.account_key[account] == key:
            return
        only = int(self.account_key[account])
        if only >= 0:  # a second key for the account: its first one gets frames of its own
            self._split_off(only, account, account_frames, changed)
        owner = self._owner(key)
        if owner is not None:  # a second account for the key
            self._split_off(key, owner, account_frames, changed)
        if self.account_key[account] == NO_KEY and key >= known and self.key_slot[key] < 0:  # both new
            self.account_key[account] = key
            changed.append(account)
            return
        if self.account_key[account] != SPLIT:
            self.account_key[account] = SPLIT
            changed.append(account)
        if self.key_slot[key] < 0:
            self._own_slot(key)

    def _own_slot(self, key: int) -> int:
        slot = int(self.split.slots_for([self.keys.names[key]])[0])
        self.split_key.append(key)
        self.frames.ensure_slots(len(self.split))
        self.key_slot[key] = slot
        return slot

    def _split_off(self, key: int, account: int, account_frames: FrameStore, changed: list[int]) -> None:
        """Give ``key`` frames of its own: a copy of ``account``'s state, whose frames it had so far."""
        slot = self._own_slot(key)
        rows = account_frames.slot_rows(np.array([account], np.int64))
        self.frames.load_slot(slot, {name: row[0] for name, row in rows.items()})
        self.frames.mark_dirty(np.array([slot], np.int64))
        self.account_key[account] = SPLIT
        changed.append(account)

    def closed_key_frames(self, account_closed: ClosedFrames, key_closed: ClosedFrames) -> ClosedFrames:
        """Every key's closed frames, ``slot`` = key id: derived from the account's or the key's own."""
        derived_keys = self.account_key[account_closed.slot]
        derived = account_closed.take(derived_keys >= 0)
        derived = dataclasses.replace(derived, slot=derived_keys[derived_keys >= 0])
        split_key = np.asarray(self.split_key, np.int32)
        own = dataclasses.replace(key_closed, slot=split_key[key_closed.slot])
        return ClosedFrames.concat([derived, own])

    # --- checkpoints -----------------------------------------------------------------
    def account_extras(self, slot: int) -> dict[str, object]:
        key = int(self.account_key[slot]) if slot < self.account_key.shape[0] else NO_KEY
        return {API_KEY_EXTRA: self.keys.names[key]} if key >= 0 else {}

    def load_account_extras(self, slot: int, extras: dict[str, object]) -> None:
        """An account without ``API_KEY_EXTRA`` has keys with frames of their own (or none tracked yet)."""
        self.account_key = _grown(self.account_key, slot + 1, NO_KEY)
        name = extras.get(API_KEY_EXTRA)
        if name is None:
            self.account_key[slot] = SPLIT
            return
        key = self._register(str(name), self.accounts.names[slot])
        # A key restored with frames of its own wins (its block can be newer than the account's,
        # checkpointed with another partition): the account's keys fold separately then.
        self.account_key[slot] = key if self.key_slot[key] < 0 else SPLIT

    def key_extras(self, slot: int) -> dict[str, object]:
        return {"account": self.key_account[self.split_key[slot]]}

    def load_key_extras(self, slot: int, extras: dict[str, object]) -> None:
        """For a key just registered in ``split`` at ``slot``."""
        owner = self._owner_if_known(self.split.names[slot])
        if owner is not None:  # see load_account_extras: the key's own frames win
            self.account_key[owner] = SPLIT
        key = self._register(self.split.names[slot], str(extras["account"]))
        if slot == len(self.split_key):
            self.split_key.append(key)
        elif slot < len(self.split_key):
            self.split_key[slot] = key
        else:
            raise ValueError(f"API key slot {slot} registered out of order ({len(self.split_key)} known)")
        self.key_slot[key] = slot

    def _owner_if_known(self, name: str) -> int | None:
        key = self.keys.slot_of(name)
        return None if key is None else self._owner(key)

    def _register(self, name: str, account: str) -> int:
        key = int(self.keys.slots_for([name])[0])
        if key == len(self.key_account):
            self.key_account.append(account)
        else:
            self.key_account[key] = account
        self.key_slot = _grown(self.key_slot, len(self.keys), OWN_FRAMES_NONE)
        return key
