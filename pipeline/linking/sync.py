"""Synchronised accounts: whose calls per minute rise and fall together, found without comparing all pairs.

``find_groups`` takes the accounts active in one window of minutes (``SyncConfig``) and the
``repeat_minutes`` before it, and returns the groups whose detrended curves correlate at
``min_r`` or more: eligible accounts, detrended and scaled to unit length (so ``z_a · z_b``
is the Pearson r), clockwork left out, candidates from signed random projections (LSH),
verified, grouped, and groups following the platform's own curve dropped. Never a matrix over
all pairs: the candidates stay O(n). Each step, its settings and why:
docs/linking.md ("Timing correlation (`sync`)", How), costs under Cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pipeline.linking.config import SyncConfig

_MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation
_MEAN_AD_TO_SIGMA = 1.2533  # the same for the mean absolute deviation
_CHUNK = 1 << 16  # candidate pairs verified per step (bounds the temporary arrays)
_MIN_FOLLOWERS = 3  # outsiders following a group's curve, at least, before it can be the platform's


@dataclass(frozen=True)
class Group:
    """Accounts (indices into the window's rows) whose calls per minute correlate, with each one's mean
    correlation with the others and its active minutes."""

    rows: np.ndarray
    r: np.ndarray  # mean Pearson r of each member with the other members
    active: np.ndarray  # minutes of the window with calls, per member

    @property
    def mean_r(self) -> float:
        """Mean Pearson r over the group's pairs."""
        return float(self.r.mean())


@dataclass
class SyncStats:
    eligible: int = 0  # accounts compared (enough active minutes, a curve)
    candidates: int = 0  # distinct candidate pairs verified
    edges: int = 0  # candidate pairs whose r reached min_r
    big_buckets: int = 0  # buckets resolved around their central member
    groups: int = 0
    grouped: int = 0  # accounts in a group
    periodic: int = 0  # accounts left out: they follow a short period (a cron)
    repeating: int = 0  # accounts left out: they repeat the period before (an hourly job)
    stepped: int = 0  # accounts left out: mostly one level shift (a steady rate changing once)
    widely_followed: int = 0  # groups dropped: their curve is the platform's (``_followed_widely``)


@dataclass
class Found:
    groups: list[Group] = field(default_factory=list)
    stats: SyncStats = field(default_factory=SyncStats)


def periods(window: int) -> tuple[int, ...]:
    """Short periods checked for clock repetition: those repeating at least four times in the window."""
    return tuple(range(2, window // 4 + 1))


def _orthonormal(columns: np.ndarray) -> np.ndarray:
    q, r = np.linalg.qr(columns)
    return q[:, np.abs(np.diag(r)) > 1e-9]


@lru_cache(maxsize=8)
def _bases(window: int, trend_minutes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An orthonormal basis of the slow curves (cosines of periods down to ``trend_minutes``, the constant
    included) and, side by side, one per period of ``periods`` of the repeating profiles of that period
    beyond the slow ones, with the first column of each."""
    t = np.arange(window) + 0.5
    k = np.arange(int(2 * window / trend_minutes) + 1)
    slow = _orthonormal(np.cos(np.pi * np.outer(t, k) / window))
    repeating = []
    for p in periods(window):
        phases = (np.arange(window) % p)[:, None] == np.arange(p)[None, :]
        repeating.append(_orthonormal(phases - slow @ (slow.T @ phases)))
    if not repeating:  # under 8 minutes: no period repeats four times
        return slow, np.empty((window, 0)), np.empty(0, np.int64)
    starts = np.cumsum([0] + [b.shape[1] for b in repeating[:-1]])
    return slow, np.hstack(repeating), starts


@lru_cache(maxsize=8)
def _steps(window: int, trend_minutes: int) -> np.ndarray:
    """Unit columns: a level shift after each minute of the window, beyond the slow curves."""
    slow, _, _ = _bases(window, trend_minutes)
    shifts = (np.arange(window)[:, None] > np.arange(window - 1)[None, :]).astype(np.float64)
    shifts -= slow @ (slow.T @ shifts)
    return shifts / np.sqrt((shifts * shifts).sum(axis=0))


@dataclass(frozen=True)
class Normalised:
    """The eligible rows of a window and their detrended calls per minute as centred unit vectors."""

    rows: np.ndarray
    z: np.ndarray
    periodic: int  # rows left out: they follow a short period
    repeating: int  # rows left out: they repeat the window ``repeat_minutes`` earlier
    stepped: int = 0  # rows left out: mostly one level shift


def _standardise(x: np.ndarray, config: SyncConfig,
                 clockwork: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``x`` (NaN: minutes before the account was first seen, a prefix), over its known minutes
    only: clipped at ``clip_mads`` robust sigmas around its median, minus its least-squares fit of slow
    curves, centred, unit length; 0 in the unknown minutes, so they add nothing to any correlation and a
    late start is no step. Returns (rows with something left, the vectors, rows following a short period
    — one explains ``periodic_share`` of the vector; a random curve, about period / window —, rows that
    are mostly one level shift — ``step_share`` of the vector), each judged over the known minutes."""
    n, window = x.shape
    z = np.zeros((n, window))
    keep = np.zeros(n, bool)
    periodic = np.zeros(n, bool)
    stepped = np.zeros(n, bool)
    unknown = np.isnan(x).sum(axis=1)
    for u in np.unique(unknown).tolist():
        rows = np.flatnonzero(unknown == u)
        if u < window:
            known = _known_curves(x[rows, u:], config, clockwork)
            keep[rows], z[rows, u:], periodic[rows], stepped[rows] = known
    return keep, z, periodic, stepped


def _known_curves(x: np.ndarray, config: SyncConfig,
                  clockwork: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``_standardise`` for rows known over all their (equally many) minutes."""
    slow, repeating, starts = _bases(x.shape[1], config.trend_minutes)
    level = np.median(x, axis=1, keepdims=True)
    spread = np.abs(x - level)
    sigma = np.median(spread, axis=1, keepdims=True) * _MAD_TO_SIGMA
    # Most minutes equal (an on/off curve idle half the time, a 0/1 trickle): the mean absolute deviation.
    sigma = np.where(sigma > 0, sigma, spread.mean(axis=1, keepdims=True) * _MEAN_AD_TO_SIGMA)
    z = np.clip(x, level - config.clip_mads * sigma, level + config.clip_mads * sigma)
    z -= (z @ slow) @ slow.T
    norm = np.sqrt((z * z).sum(axis=1))
    keep = norm > 1e-9 * np.maximum(sigma[:, 0], 1.0)
    z /= np.where(keep, norm, 1.0)[:, None]
    z[~keep] = 0.0
    periodic = np.zeros(len(z), bool)
    stepped = np.zeros(len(z), bool)
    if clockwork:
        if len(starts):
            shares = np.add.reduceat((z @ repeating) ** 2, starts, axis=1)  # [rows, periods]
            periodic = shares.max(axis=1) >= config.periodic_share
        if x.shape[1] > 1:
            stepped = ((z @ _steps(x.shape[1], config.trend_minutes)) ** 2).max(axis=1) >= config.step_share
    return keep, z, periodic, stepped


def normalise(counts: np.ndarray, config: SyncConfig) -> Normalised:
    """``counts``: ``[accounts, repeat_minutes + window_minutes]`` calls per minute, oldest first (the window
    last; NaN: not known, before the account was first seen).

    Compared: the rows with ``min_active_minutes`` minutes of the window with calls and a curve left once
    slow curves are removed, except those whose timing is the clock's, shared by every account on the
    same schedule and so no evidence of anything: a short period explains ``periodic_share`` of the curve
    (a cron every few minutes), the window repeats the same minutes ``repeat_minutes`` earlier (Pearson r
    at least ``repeat_r``: an hourly job), or one level shift explains ``step_share`` of it (a steady
    client whose rate changes at the top of the hour; two such curves correlate about as the square
    root of the product of their shares, so below 0.6 no step alone makes an r of 0.8)."""
    window = config.window_minutes
    rows = np.flatnonzero((counts[:, -window:] > 0).sum(axis=1) >= config.min_active_minutes)
    keep, z, periodic, stepped = _standardise(counts[rows, -window:].astype(np.float64), config)
    repeating = np.zeros(len(rows), bool)
    if config.repeat_minutes:
        before = counts[rows, -window - config.repeat_minutes:-config.repeat_minutes].astype(np.float64)
        known, earlier, _, _ = _standardise(before, config, clockwork=False)
        repeating = known & ((z * earlier).sum(axis=1) >= config.repeat_r)
    periodic &= keep
    stepped &= keep & ~periodic
    repeating &= keep & ~periodic & ~stepped
    compared = keep & ~periodic & ~stepped & ~repeating
    return Normalised(rows[compared], z[compared], int(periodic.sum()), int(repeating.sum()), int(stepped.sum()))


@lru_cache(maxsize=8)
def _directions(window: int, columns: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((window, columns)).astype(np.float32)


def band_bits(n: int) -> int:
    """Bits per band for ``n`` eligible accounts: a bucket holds a quarter of an unrelated account on average."""
    return min(30, max(8, math.ceil(math.log2(max(n, 2))) + 2))


def band_keys(z: np.ndarray, bands: int, seed: int) -> np.ndarray:
    """``[n, bands]`` int64 band values of the signed random projections of ``z``."""
    n, window = z.shape
    bits = band_bits(n)
    signs = (z.astype(np.float32) @ _directions(window, bands * bits, seed)) > 0
    weights = np.exp2(np.arange(bits))  # exact in float64 (bits <= 30): a BLAS product, not an integer one
    return (signs.reshape(n, bands, bits).astype(np.float64) @ weights).astype(np.int64)


def candidate_pairs(keys: np.ndarray, z: np.ndarray, max_bucket: int,
                    stats: SyncStats) -> tuple[np.ndarray, np.ndarray]:
    """Distinct pairs ``(a, b)``, ``a < b``, sharing a bucket of some band (big buckets: around their centre)."""
    n, bands = keys.shape
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    for band in range(bands):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        new = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        run = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        lengths = np.diff(np.r_[starts, n])
        small = lengths[run] <= max_bucket
        for d in range(1, min(max_bucket, int(lengths.max(initial=1)))):
            i = np.flatnonzero((run[:-d] == run[d:]) & small[:-d])
            a_parts.append(order[i])
            b_parts.append(order[i + d])
        for start, length in zip(starts[lengths > max_bucket].tolist(), lengths[lengths > max_bucket].tolist(),
                                 strict=True):
            members = order[start:start + length]
            vectors = z[members]
            centre = members[int(np.argmax(vectors @ vectors.sum(axis=0)))]
            others = members[members != centre]
            a_parts.append(np.full(len(others), centre))
            b_parts.append(others)
            stats.big_buckets += 1
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    unique = np.unique(np.minimum(a, b) * n + np.maximum(a, b))
    return unique // n, unique % n


def correlations(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of the pairs (the vectors are centred and of unit length)."""
    out = np.empty(len(a))
    for start in range(0, len(a), _CHUNK):
        part = slice(start, start + _CHUNK)
        out[part] = np.einsum("ij,ij->i", z[a[part]], z[b[part]])
    return out


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per node the smallest node of its connected component (min-label propagation with pointer jumping)."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _coherent(z: np.ndarray, members: np.ndarray, min_r: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``members`` pruned (the lowest tenth of those below ``min_r`` at a time) until each one's mean r with
    the others reaches ``min_r``: (kept, their mean r, pruned)."""
    pruned: list[int] = []
    while len(members) >= 2:
        vectors = z[members]
        mean_r = (vectors @ vectors.sum(axis=0) - 1.0) / (len(members) - 1)
        low = np.flatnonzero(mean_r < min_r)
        if not len(low):
            return members, mean_r, np.asarray(pruned, np.int64)
        worst = low[np.argsort(mean_r[low], kind="stable")[: max(1, len(members) // 10)]]
        pruned.extend(members[worst].tolist())
        members = np.delete(members, worst)
    pruned.extend(members.tolist())
    return np.empty(0, np.int64), np.empty(0), np.asarray(pruned, np.int64)


def _groups(z: np.ndarray, a: np.ndarray, b: np.ndarray, min_r: float, min_size: int, *,
            again: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    labels = components(len(z), a, b)
    nodes = np.unique(np.r_[a, b])
    out = []
    order = nodes[np.argsort(labels[nodes], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for members in np.split(order, bounds) if len(order) else []:
        kept, mean_r, pruned = _coherent(z, members, min_r)
        if len(kept) >= min_size:
            out.append((kept, mean_r))
        if again and len(pruned) >= min_size:
            inside = np.isin(a, pruned) & np.isin(b, pruned)
            out += _groups(z, a[inside], b[inside], min_r, min_size, again=False)
    return out


def _followed_widely(z: np.ndarray, groups: list[np.ndarray], config: SyncConfig) -> np.ndarray:
    """Per group, whether more than ``popular_share`` of the other compared accounts (and at least
    ``_MIN_FOLLOWERS``) follow its curve at Pearson r ``follow_r`` or more: a change the whole platform
    sees at once (traffic tripling at one minute, an incident and its retries), which the group's
    accounts merely show most clearly. An unrelated account follows a fleet's own curve that closely
    about 1% of the time."""
    if not groups:
        return np.zeros(0, bool)
    curves = np.stack([z[members].sum(axis=0) for members in groups])
    curves /= np.sqrt((curves * curves).sum(axis=1, keepdims=True))
    follows = (z @ curves.T) >= config.follow_r  # [accounts, groups]
    out = np.zeros(len(groups), bool)
    for g, members in enumerate(groups):
        followers = int(follows[:, g].sum() - follows[members, g].sum())
        others = len(z) - len(members)
        out[g] = followers >= _MIN_FOLLOWERS and followers > config.popular_share * others
    return out


def find_groups(counts: np.ndarray, config: SyncConfig) -> Found:
    """Groups of synchronised rows of ``counts`` (``[accounts, repeat_minutes + window_minutes]`` calls per
    minute, oldest first)."""
    found = Found()
    st = found.stats
    vectors = normalise(counts, config)
    z = vectors.z
    st.eligible, st.periodic, st.repeating = len(vectors.rows), vectors.periodic, vectors.repeating
    st.stepped = vectors.stepped
    if st.eligible < 2:
        return found
    a, b = candidate_pairs(band_keys(z, config.bands, config.seed), z, config.max_bucket, st)
    st.candidates = len(a)
    edge = correlations(z, a, b) >= config.min_r
    a, b = a[edge], b[edge]
    st.edges = len(a)
    active = (counts[vectors.rows, -config.window_minutes:] > 0).sum(axis=1)
    groups = _groups(z, a, b, config.min_r, config.min_group, again=True)
    shared = _followed_widely(z, [members for members, _ in groups], config)
    st.widely_followed = int(shared.sum())
    for (members, mean_r), wide in zip(groups, shared.tolist(), strict=True):
        if not wide:
            order = np.argsort(vectors.rows[members], kind="stable")
            found.groups.append(Group(vectors.rows[members][order], mean_r[order], active[members][order]))
    st.groups = len(found.groups)
    st.grouped = sum(len(g.rows) for g in found.groups)
    return found
