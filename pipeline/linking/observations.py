"""Link observations of one decoded batch: the distinct (feature, account) pairs it contains.

Pure and vectorised: columns in, columns out. Pairs are found on numbers (``feature_keys``)
and names are built only for the pairs asked for (``Pairs.named``): the publisher names just
those it has not sent before. ``config.KINDS`` lists the kinds; a ``tpl`` observation counts
only when templated (a near-duplicate of another account, ``TemplateCarry`` included) and
carries its simhash as the sample. Each feature's form and the template rule:
docs/linking.md ("Topology": Observations).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.linking.config import TemplateConfig
from pipeline.linking.feature_keys import (
    KIND_H2,
    KIND_PAY,
    KIND_SALT,
    KIND_TLS,
    KIND_TPL,
    KIND_UA,
    KindKeys,
    asn_keys,
    feature_names,
    feature_partition,
    ip_keys,
    string_hashes,
    string_keys,
)

_WINDOW = 4  # neighbours in (band, simhash) order compared for near-duplicates


class LinkColumns(Protocol):
    """What linking reads of a decoded batch; ``pipeline.decode``'s DecodedBatch has it.

    ``raw`` must hold ``ts`` (int ms), ``client_ip``, ``user_agent`` and
    ``payment_fingerprint`` (str, "" = absent), ``asn`` (0 = absent) and
    ``prompt_simhash`` (uint64, 0 = absent), one entry per account id.
    """

    account_ids: Sequence[str]
    raw: Mapping[str, Any]

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class Observations:
    """Distinct (feature, account) pairs of a batch, as columns (``len`` = number of pairs)."""

    features: list[str]  # distinct features, referenced by feature_index
    accounts: list[str]  # accounts, referenced by account_index
    feature_index: np.ndarray  # int64 [n]
    account_index: np.ndarray  # int64 [n]
    ts_ms: np.ndarray  # int64 [n], event time of the pair's first event in the batch
    sample: np.ndarray  # uint64 [n], tpl: simhash of the first templated event; 0 for other kinds

    def __len__(self) -> int:
        return len(self.feature_index)

    def partitions(self, n_partitions: int) -> np.ndarray:
        """The partition owning each of ``features`` (int64 [len(features)]), by ``feature_partition``."""
        return np.array([feature_partition(f, n_partitions) for f in self.features], np.int64)


@dataclass(frozen=True)
class AccountSummary:
    """Per account of the batch: calls and the event-time span, for cluster scoring."""

    accounts: list[str]
    calls: np.ndarray  # int64
    first_ts_ms: np.ndarray  # int64
    last_ts_ms: np.ndarray  # int64


@dataclass(frozen=True)
class TemplateCarry:
    """The latest templated events (simhash, account, event time), up to `carry_events`, handed from one batch to
    the next: one entry per event, not per distinct (simhash, account) pair."""

    simhash: np.ndarray  # uint64
    accounts: np.ndarray  # object (str)
    ts_ms: np.ndarray  # int64

    @classmethod
    def empty(cls) -> TemplateCarry:
        return cls(np.zeros(0, np.uint64), np.zeros(0, object), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.accounts)


def factorize(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct values (first-seen order) and each value's code (int64).

    By Python's string hash (computed in C) and a NumPy sort, then checked value by
    value: a 64-bit collision, should one ever merge two strings, takes the exact path.
    """
    n = len(values)
    if n == 0:
        return [], np.zeros(0, np.int64)
    hashes = np.fromiter(map(hash, values), np.int64, n)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    codes = rank[inverse.reshape(-1)]
    distinct = [values[i] for i in first[order].tolist()]
    if any(map(operator.ne, values, map(distinct.__getitem__, codes.tolist()))):
        return _factorize_exact(values)
    return distinct, codes


def _factorize_exact(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    distinct = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, values), np.int64, count=len(values))


def _templated(simhash: np.ndarray, account: np.ndarray, band: np.ndarray, max_hamming: int,
               n_new: int) -> np.ndarray:
    """Per (simhash, account): has a near-duplicate partner in the same band value, one of the pair
    among the first ``n_new`` (the batch's; the rest, the carry's, were checked against each other)."""
    order = np.lexsort((simhash, band))
    s, a, b, new = simhash[order], account[order], band[order], order < n_new
    marked = np.zeros(len(s), bool)
    for k in range(1, min(_WINDOW, len(s) - 1) + 1):
        pair = (b[k:] == b[:-k]) & (np.bitwise_count(s[k:] ^ s[:-k]) <= max_hamming) & (new[k:] | new[:-k])
        pair &= (s[k:] != s[:-k]) | (a[k:] != a[:-k])  # one account repeating a prompt is no template
        marked[k:] |= pair
        marked[:-k] |= pair
    out = np.empty_like(marked)
    out[order] = marked
    return out


def _distinct_simhashes(
    simhash: np.ndarray, account: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (simhash, account) pairs with the earliest event time of each."""
    order = np.lexsort((ts, account, simhash))
    s, a, t = simhash[order], account[order], ts[order]
    first = np.ones(len(s), bool)
    first[1:] = (s[1:] != s[:-1]) | (a[1:] != a[:-1])
    return s[first], a[first], t[first]


def _template_observations(
    simhash: np.ndarray, account: np.ndarray, ts: np.ndarray, carry: TemplateCarry, carry_codes: np.ndarray,
    cfg: TemplateConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(band, band value, account, ts, sample) of templated simhashes: the batch's distinct ones, and
    carried events a near-duplicate in the batch confirms (so a template member is observed at its
    first templated call, wherever the batches are cut; the publisher sends a pair once)."""
    present = simhash != 0
    s, a, t = _distinct_simhashes(simhash[present], account[present], ts[present])
    s_all = np.concatenate([s, carry.simhash])
    a_all = np.concatenate([a, carry_codes])
    t_all = np.concatenate([t, carry.ts_ms])
    mask = np.uint64((1 << cfg.band_bits) - 1)
    parts: list[tuple[np.ndarray, ...]] = []
    for band in range(cfg.bands):
        values = (s_all >> np.uint64(band * cfg.band_bits)) & mask
        keep = np.flatnonzero(_templated(s_all, a_all, values, cfg.max_hamming, len(s)))
        parts.append((np.full(len(keep), band, np.int64), values[keep].astype(np.int64), a_all[keep], t_all[keep],
                      s_all[keep]))
    return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Pairs:
    """Distinct (feature, account) pairs of a batch by number (``feature_keys``); ``named`` builds the names.

    ``key`` identifies a pair within this process (``SentPairs`` keeps them); ``row`` is
    an event carrying the feature (-1 for ``tpl``, named by its value).
    """

    key: np.ndarray  # uint64, never 0
    feature: np.ndarray  # uint64 feature key: the kind's salt xor the value key
    kind: np.ndarray  # int64
    value: np.ndarray  # uint64
    row: np.ndarray  # int64
    account: np.ndarray  # int64 index into accounts
    ts_ms: np.ndarray  # int64, event time of the pair's first event in the batch
    sample: np.ndarray  # uint64, tpl: simhash of the first templated event; 0 for other kinds
    accounts: list[str]

    def __len__(self) -> int:
        return len(self.key)

    def select(self, rows: np.ndarray) -> Pairs:
        """The pairs of ``rows`` (a mask or indexes)."""
        return Pairs(self.key[rows], self.feature[rows], self.kind[rows], self.value[rows], self.row[rows],
                     self.account[rows], self.ts_ms[rows], self.sample[rows], self.accounts)

    def named(self, raw: Mapping[str, Any], band_bits: int) -> Observations:
        """These pairs as Observations: each distinct feature named once, from its first pair."""
        _, first, feature_index = np.unique(self.feature, return_index=True, return_inverse=True)
        names = feature_names(self.kind[first], self.value[first], self.row[first], raw, band_bits)
        used, account_index = np.unique(self.account, return_inverse=True)
        return Observations(names, [self.accounts[i] for i in used.tolist()],
                            feature_index.reshape(-1).astype(np.int64), account_index.reshape(-1).astype(np.int64),
                            self.ts_ms, self.sample)


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: spreads feature keys before the xor


def extract_pairs(
    batch: LinkColumns, template: TemplateConfig, carry: TemplateCarry | None = None
) -> tuple[Pairs, AccountSummary, TemplateCarry]:
    """The batch's distinct link pairs, its per-account summary and the carry for the next batch.

    Never raises on valid decoded input; an empty batch gives empty results (and the carry unchanged).
    """
    carry = carry or TemplateCarry.empty()
    raw = batch.raw
    ts = np.asarray(raw["ts"], np.int64)
    accounts, codes_all = factorize([*batch.account_ids, *carry.accounts.tolist()])
    acc = codes_all[: len(batch)]
    carry_codes = codes_all[len(batch):]
    simhash = np.asarray(raw["prompt_simhash"], np.uint64)

    kinds = [
        string_keys(KIND_PAY, raw["payment_fingerprint"]),
        ip_keys(raw["client_ip"]),
        asn_keys(np.asarray(raw["asn"])),
        string_keys(KIND_UA, raw["user_agent"]),
        string_keys(KIND_TLS, raw["tls_fingerprint"]),
        string_keys(KIND_H2, raw["http2_fingerprint"]),
        _template_keys(simhash, acc, ts, carry, carry_codes, template),
    ]
    kind = np.concatenate([np.full(len(k.rows), k.kind, np.int64) for k in kinds])
    value = np.concatenate([k.value for k in kinds])
    row = np.concatenate([k.rows for k in kinds])
    account = np.concatenate([acc[k.rows] for k in kinds[:-1]] + [kinds[-1].account])
    event_ts = np.concatenate([ts[k.rows] for k in kinds[:-1]] + [kinds[-1].ts_ms])
    sample = np.concatenate([np.zeros(len(row) - len(kinds[-1].rows), np.uint64), kinds[-1].sample])

    feature = value ^ KIND_SALT[kind]
    key = ((feature * _MIX) ^ string_hashes(accounts)[account]) | np.uint64(1)
    # Distinct pairs, keeping the earliest event (smallest sample on ties).
    order = np.lexsort((sample, event_ts, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]] if len(order) else order
    pairs = Pairs(key[first], feature[first], kind[first], value[first], row[first], account[first],
                  event_ts[first], sample[first], accounts)
    return pairs, _summary(accounts, acc, ts), _next_carry(batch, simhash, ts, carry, template)


@dataclass(frozen=True)
class _TemplateKeys(KindKeys):
    account: np.ndarray  # int64: tpl pairs come from distinct (simhash, account), not from event rows
    ts_ms: np.ndarray
    sample: np.ndarray


def _template_keys(simhash: np.ndarray, acc: np.ndarray, ts: np.ndarray, carry: TemplateCarry,
                   carry_codes: np.ndarray, template: TemplateConfig) -> _TemplateKeys:
    band, value, t_acc, t_ts, t_sample = _template_observations(simhash, acc, ts, carry, carry_codes, template)
    keys = ((band << template.band_bits) + value).astype(np.uint64)
    # No event row: tpl pairs are named by their value.
    return _TemplateKeys(KIND_TPL, np.full(len(keys), -1, np.int64), keys, t_acc, t_ts, t_sample.astype(np.uint64))


def _summary(accounts: list[str], acc: np.ndarray, ts: np.ndarray) -> AccountSummary:
    n = len(accounts)
    calls = np.bincount(acc, minlength=n).astype(np.int64)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    last = np.full(n, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, acc, ts)
    np.maximum.at(last, acc, ts)
    seen = np.flatnonzero(calls)  # carry-only accounts had no calls in this batch
    return AccountSummary([accounts[i] for i in seen.tolist()], calls[seen], first[seen], last[seen])


def _next_carry(
    batch: LinkColumns, simhash: np.ndarray, ts: np.ndarray, carry: TemplateCarry, cfg: TemplateConfig
) -> TemplateCarry:
    keep = cfg.carry_events
    if keep == 0 or not len(batch):
        return carry if keep else TemplateCarry.empty()
    present = np.flatnonzero(simhash != 0)
    # The latest events by event time; the old carry fills up what the batch leaves.
    recent = present[np.argsort(ts[present], kind="stable")[-keep:]]
    s = np.concatenate([carry.simhash, simhash[recent]])
    t = np.concatenate([carry.ts_ms, ts[recent]])
    accounts = np.concatenate([carry.accounts, np.asarray(batch.account_ids, object)[recent]])
    tail = np.argsort(t, kind="stable")[-keep:]
    return TemplateCarry(s[tail], accounts[tail], t[tail])
