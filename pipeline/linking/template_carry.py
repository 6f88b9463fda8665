"""Template confirmation across batches: which prompt sightings have a near-duplicate of another account
within the template window of event time.

A sighting is a distinct (simhash, account) of a batch with its first event time. On band ``b`` it is
templated when one of its ``WINDOW`` nearest neighbours, in the order of the band-first key (the
simhash rotated so band ``b`` leads: equal band values sort together), has the same band value, lies
within ``max_hamming`` bits, is another account or another prompt, and is at most ``window_s`` apart
in event time. Neighbours come from the batch and from the carry: per band, the sightings of the
window before, kept sorted by that key. A batch is looked up in it (``searchsorted``) and merged in,
so a batch costs a copy of the carry, not a sort of it. A carried sighting a batch confirms is
templated too (observed then, at its own time), so where batches are cut matters only at the
neighbour limit and past the ``carry_events`` bound: docs/linking.md, "Event time and determinism".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.linking.config import TemplateConfig

WINDOW = 4  # neighbours on each side compared for near-duplicates


def band_key(simhash: np.ndarray, band: int, band_bits: int) -> np.ndarray:
    """``simhash`` (uint64) rotated so band ``band``'s bits are the top ``band_bits``; ``unband_key`` undoes it."""
    shift = (64 - (band + 1) * band_bits) % 64
    if shift == 0:
        return simhash.copy()
    return (simhash << np.uint64(shift)) | (simhash >> np.uint64(64 - shift))


def unband_key(key: np.ndarray, band: int, band_bits: int) -> np.ndarray:
    shift = (64 - (band + 1) * band_bits) % 64
    if shift == 0:
        return key.copy()
    return (key >> np.uint64(shift)) | (key << np.uint64(64 - shift))


@dataclass(frozen=True)
class Sightings:
    """Distinct (simhash, account) sightings: a batch's, or one band's carry sorted by ``key``."""

    key: np.ndarray  # uint64: the simhash (batch) or its band-first key (carry)
    account: np.ndarray  # uint64: the account id's string hash (compared, never sent)
    name: np.ndarray  # object: the account id
    ts_ms: np.ndarray  # int64: first event time

    def __len__(self) -> int:
        return len(self.key)

    def take(self, rows: np.ndarray) -> Sightings:
        return Sightings(self.key[rows], self.account[rows], self.name[rows], self.ts_ms[rows])

    @classmethod
    def empty(cls) -> Sightings:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, object), np.zeros(0, np.int64))


@dataclass(frozen=True)
class TemplateCarry:
    """Per band, the window's sightings sorted by band-first key; ``newest_ms``: the latest event time seen."""

    bands: tuple[Sightings, ...] = ()
    newest_ms: int = np.iinfo(np.int64).min

    def __len__(self) -> int:
        return len(self.bands[0]) if self.bands else 0

    def sightings(self, cfg: TemplateConfig) -> Sightings:
        """The carried sightings within the window, with their simhash as ``key`` (of the last band's copy)."""
        if not self.bands:
            return Sightings.empty()
        band = len(self.bands) - 1
        last = self.bands[band]
        live = last.take(np.flatnonzero(last.ts_ms >= self.newest_ms - cfg.window_s * 1000))
        return Sightings(unband_key(live.key, band, cfg.band_bits), live.account, live.name, live.ts_ms)


@dataclass(frozen=True)
class Templated:
    """Per band, the batch's templated sightings (indexes into the batch) and the carried ones it confirmed."""

    batch_rows: list[np.ndarray]
    confirmed: list[Sightings]  # key: the simhash


def _near(key: np.ndarray, other: np.ndarray, account: np.ndarray, other_account: np.ndarray, ts: np.ndarray,
          other_ts: np.ndarray, cfg: TemplateConfig, window_ms: int) -> np.ndarray:
    top = np.uint64(64 - cfg.band_bits)
    pair = (key >> top) == (other >> top)
    pair &= np.bitwise_count(key ^ other) <= cfg.max_hamming
    pair &= (key != other) | (account != other_account)  # one account repeating a prompt is no template
    pair &= np.abs(ts - other_ts) <= window_ms
    return pair


def confirm(batch: Sightings, carry: TemplateCarry, cfg: TemplateConfig) -> tuple[Templated, TemplateCarry]:
    """The batch's templated sightings per band, the carried ones it confirmed, and the next carry."""
    if not len(batch):
        return Templated([np.zeros(0, np.int64)] * cfg.bands, [Sightings.empty()] * cfg.bands), carry
    window_ms = cfg.window_s * 1000
    bands = carry.bands or tuple(Sightings.empty() for _ in range(cfg.bands))
    newest = max(carry.newest_ms, int(batch.ts_ms.max(initial=carry.newest_ms)))
    out = Templated([], [])
    next_bands = []
    for band, kept in enumerate(bands):
        key = band_key(batch.key, band, cfg.band_bits)
        order = np.argsort(key, kind="stable")
        mine = Sightings(key[order], batch.account[order], batch.name[order], batch.ts_ms[order])
        marked = np.zeros(len(mine), bool)
        for k in range(1, min(WINDOW, len(mine) - 1) + 1):
            pair = _near(mine.key[k:], mine.key[:-k], mine.account[k:], mine.account[:-k], mine.ts_ms[k:],
                         mine.ts_ms[:-k], cfg, window_ms)
            marked[k:] |= pair
            marked[:-k] |= pair
        at = np.searchsorted(kept.key, mine.key)
        hit = np.zeros(len(kept), bool)
        for d in range(-WINDOW, WINDOW):  # the carry's neighbours in the merged order: at-4 .. at+3
            j = at + d
            valid = np.flatnonzero((j >= 0) & (j < len(kept)))
            jv = j[valid]
            pair = _near(mine.key[valid], kept.key[jv], mine.account[valid], kept.account[jv], mine.ts_ms[valid],
                         kept.ts_ms[jv], cfg, window_ms)
            marked[valid[pair]] = True
            hit[jv[pair]] = True
        out.batch_rows.append(np.sort(order[marked]))
        confirmed = kept.take(np.flatnonzero(hit))
        out.confirmed.append(Sightings(unband_key(confirmed.key, band, cfg.band_bits), confirmed.account,
                                       confirmed.name, confirmed.ts_ms))
        if cfg.carry_events:
            next_bands.append(_merged(kept, mine, at, newest - window_ms, cfg.carry_events))
    return out, TemplateCarry(tuple(next_bands), newest) if next_bands else TemplateCarry()


def _merged(kept: Sightings, new: Sightings, at: np.ndarray, oldest_ms: int, limit: int) -> Sightings:
    """``new`` (sorted, its place in ``kept`` at ``at``) merged in, but for sightings already carried (the
    earlier stays); sightings past the window (``oldest_ms``) or past ``limit`` dropped in bulk."""
    carried = np.zeros(len(new), bool)
    for d in range(WINDOW if len(kept) else 0):  # equal keys sort together from ``at``; accounts may share one
        j = np.minimum(at + d, len(kept) - 1)
        carried |= (at + d < len(kept)) & (kept.key[j] == new.key) & (kept.account[j] == new.account)
    add = np.flatnonzero(~carried)
    merged = Sightings(*(np.insert(old, at[add], cols[add]) for old, cols in
                         zip((kept.key, kept.account, kept.name, kept.ts_ms),
                             (new.key, new.account, new.name, new.ts_ms), strict=True)))
    # Dropped in bulk, not every batch (a copy of the carry each time): sightings older than the window
    # once they are an eighth of it (until then no pair reaches them: ``_near`` checks the time); past
    # ``limit``, all but the latest seven eighths of it.
    expired = merged.ts_ms < oldest_ms
    if len(merged) > limit:
        ts = np.where(expired, np.iinfo(np.int64).min, merged.ts_ms)
        keep = np.zeros(len(merged), bool)
        keep[np.argsort(ts, kind="stable")[len(ts) - limit * 7 // 8:]] = True
        return merged.take(np.flatnonzero(keep & ~expired))
    if np.count_nonzero(expired) * 8 > len(merged):
        return merged.take(np.flatnonzero(~expired))
    return merged
