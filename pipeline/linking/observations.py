"""Link observations of one decoded batch: the distinct (feature, account) pairs it contains.

Pure and vectorised: columns in, columns out. Pairs are found on numbers (``feature_keys``)
and names are built only for the pairs asked for (``Pairs.named``): the publisher names just
those it has not sent before. ``config.KINDS`` lists the kinds; a ``tpl`` observation counts
only when templated (``template_carry``: a near-duplicate of another account within the template
window, in the batch or carried from the batches before) and carries its simhash as the sample.
Each feature's form and the template rule: docs/linking.md ("Topology": Observations).
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
from pipeline.linking.template_carry import Sightings, TemplateCarry, confirm


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


def _distinct_simhashes(
    simhash: np.ndarray, account: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (simhash, account) pairs with the earliest event time of each."""
    order = np.lexsort((ts, account, simhash))
    s, a, t = simhash[order], account[order], ts[order]
    first = np.ones(len(s), bool)
    first[1:] = (s[1:] != s[:-1]) | (a[1:] != a[:-1])
    return s[first], a[first], t[first]


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
    raw = batch.raw
    ts = np.asarray(raw["ts"], np.int64)
    accounts, acc = factorize(batch.account_ids)
    simhash = np.asarray(raw["prompt_simhash"], np.uint64)
    template_keys, carry = _template_keys(simhash, accounts, acc, ts, carry or TemplateCarry(), template)

    kinds = [
        string_keys(KIND_PAY, raw["payment_fingerprint"]),
        ip_keys(raw["client_ip"]),
        asn_keys(np.asarray(raw["asn"])),
        string_keys(KIND_UA, raw["user_agent"]),
        string_keys(KIND_TLS, raw["tls_fingerprint"]),
        string_keys(KIND_H2, raw["http2_fingerprint"]),
        template_keys,
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
    return pairs, _summary(accounts, acc, ts), carry


@dataclass(frozen=True)
class _TemplateKeys(KindKeys):
    account: np.ndarray  # int64: tpl pairs come from distinct (simhash, account), not from event rows
    ts_ms: np.ndarray
    sample: np.ndarray


def _template_keys(simhash: np.ndarray, accounts: list[str], acc: np.ndarray, ts: np.ndarray, carry: TemplateCarry,
                   template: TemplateConfig) -> tuple[_TemplateKeys, TemplateCarry]:
    """The templated sightings' pairs (``template_carry``), and the next carry. Carried sightings the batch
    confirms name accounts the batch may not have: they join ``accounts``."""
    present = simhash != 0
    s, a, t = _distinct_simhashes(simhash[present], acc[present], ts[present])
    names = np.asarray(accounts, object)
    batch = Sightings(s, string_hashes(accounts)[a], names[a], t)
    templated, carry = confirm(batch, carry, template)
    band, value, t_acc, t_ts, t_sample = [], [], [], [], []
    mask = np.uint64((1 << template.band_bits) - 1)
    for b, (rows, confirmed) in enumerate(zip(templated.batch_rows, templated.confirmed, strict=True)):
        sample = np.concatenate([s[rows], confirmed.key])
        band.append(np.full(len(sample), b, np.int64))
        value.append((sample >> np.uint64(b * template.band_bits)) & mask)
        t_sample.append(sample)
        t_ts.append(np.concatenate([t[rows], confirmed.ts_ms]))
        t_acc.append(np.concatenate([a[rows], _codes(accounts, confirmed.name)]))
    keys = (np.concatenate(band).astype(np.uint64) << np.uint64(template.band_bits)) + np.concatenate(value)
    # No event row: tpl pairs are named by their value.
    return _TemplateKeys(KIND_TPL, np.full(len(keys), -1, np.int64), keys, np.concatenate(t_acc),
                         np.concatenate(t_ts), np.concatenate(t_sample)), carry


def _codes(accounts: list[str], names: np.ndarray) -> np.ndarray:
    """Codes of ``names`` in ``accounts``, appending the ones it lacks (carried accounts absent from the batch)."""
    if not len(names):
        return np.zeros(0, np.int64)
    index = {name: i for i, name in enumerate(accounts)}
    for name in names.tolist():
        if name not in index:
            index[name] = len(accounts)
            accounts.append(name)
    return np.fromiter((index[n] for n in names.tolist()), np.int64, len(names))


def _summary(accounts: list[str], acc: np.ndarray, ts: np.ndarray) -> AccountSummary:
    n = len(accounts)
    calls = np.bincount(acc, minlength=n).astype(np.int64)
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    last = np.full(n, np.iinfo(np.int64).min, np.int64)
    np.minimum.at(first, acc, ts)
    np.maximum.at(last, acc, ts)
    seen = np.flatnonzero(calls)  # carry-only accounts had no calls in this batch
    return AccountSummary([accounts[i] for i in seen.tolist()], calls[seen], first[seen], last[seen])
