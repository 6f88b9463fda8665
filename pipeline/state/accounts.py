"""AccountRegistry: account_id string <-> dense integer slot for the kernels' arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class AccountRegistry:
    """Assigns each account a stable slot for the life of the worker process."""

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def slots_for(self, account_ids: Sequence[str]) -> np.ndarray:
        """Slot per account id, registering new ones (int32 array, same order)."""
        slots = self._slots
        names = self.names
        out = np.empty(len(account_ids), np.int32)
        for i, account in enumerate(account_ids):
            slot = slots.get(account)
            if slot is None:
                slot = len(names)
                slots[account] = slot
                names.append(account)
            out[i] = slot
        return out

    def slot_of(self, account: str) -> int | None:
        """The slot of ``account``, or None if it was never registered."""
        return self._slots.get(account)

    def names_of(self, slots: np.ndarray) -> list[str]:
        names = self.names
        return [names[s] for s in slots.tolist()]
