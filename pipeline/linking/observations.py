"""Link observations of one decoded batch: the distinct (feature, account) pairs it contains.

Pure and vectorised: columns in, columns out; Python loops run only over
*distinct* values (accounts, IPs, user agents, features), never over events.

Features (kind, then a value; ``config.KINDS`` lists the kinds):

* ``pay:<fingerprint>`` — payment card fingerprint;
* ``ip24:a.b.c`` / ``ip48:x:y:z`` — the client IP's IPv4 /24 or IPv6 /48;
* ``asn:<number>`` — the client's autonomous system (0 = unknown, skipped);
* ``ua:<16 hex>`` — a hash of the user agent string;
* ``tpl:<band>:<hex>`` — one band of the prompt simhash (bands × band_bits = 64).
  A band value alone is a weak LSH candidate: random prompts collide in a 16-bit
  band all the time. An event counts for ``tpl`` only when its simhash is
  *templated*: within the same band value a *different* simhash of any account
  (or the same simhash of another account) lies within ``max_hamming`` bits.
  Candidates are the ``_WINDOW`` nearest entries in (band, simhash) order, so
  the check is exact for small buckets and a close approximation for big ones.
  Simhashes of recent batches (``TemplateCarry``) take part in the check, so a
  quiet account's template is confirmed even when its calls fall into
  different batches.

Each observation carries the event time of the pair's first event in the batch
and, for ``tpl``, a *sample*: the simhash of the pair's first templated event,
which stage A compares across accounts (Hamming distance) before linking.
"""

from __future__ import annotations

import hashlib
import ipaddress
import operator
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.linking.config import TemplateConfig

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

    def select(self, rows: np.ndarray) -> Observations:
        """The observations of ``rows`` (a mask or indexes), with only the features and accounts they use."""
        f_used, f_index = np.unique(self.feature_index[rows], return_inverse=True)
        a_used, a_index = np.unique(self.account_index[rows], return_inverse=True)
        return Observations([self.features[i] for i in f_used.tolist()], [self.accounts[i] for i in a_used.tolist()],
                            f_index.astype(np.int64), a_index.astype(np.int64), self.ts_ms[rows], self.sample[rows])

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
    """The most recent distinct (simhash, account) pairs, handed from one batch to the next."""

    simhash: np.ndarray  # uint64
    accounts: np.ndarray  # object (str)
    ts_ms: np.ndarray  # int64

    @classmethod
    def empty(cls) -> TemplateCarry:
        return cls(np.zeros(0, np.uint64), np.zeros(0, object), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.accounts)


def feature_partition(feature: str, n_partitions: int) -> int:
    """Partition that owns ``feature`` in every process: CRC-32 of its UTF-8 bytes, modulo the count."""
    return zlib.crc32(feature.encode()) % n_partitions


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


def ip_prefix(ip: str) -> str | None:
    """``ip24:a.b.c`` for IPv4, ``ip48:x:y:z`` for IPv6, None for an empty or unparsable address."""
    if ":" in ip:
        try:
            top = int(ipaddress.IPv6Address(ip)) >> 80
        except ValueError:
            return None
        return f"ip48:{top >> 32:x}:{(top >> 16) & 0xFFFF:x}:{top & 0xFFFF:x}"
    head, dot, _ = ip.rpartition(".")
    return f"ip24:{head}" if dot else None


def _pay_feature(fingerprint: str) -> str:
    return f"pay:{fingerprint}"


def ua_feature(user_agent: str) -> str:
    # Hashed: user agents can be long and carry client details we do not need to repeat.
    return "ua:" + hashlib.blake2b(user_agent.encode(), digest_size=8).hexdigest()


@dataclass
class _Source:
    """One way of deriving features: a code per event (-1: none) and the label of each code."""

    codes: np.ndarray  # int64 [events]
    labels: list[str]


def _string_source(values: Sequence[str], label: Callable[[str], str | None]) -> _Source:
    distinct, codes = factorize(values)
    labels = [label(v) if v else None for v in distinct]
    # Several values may map to one label (IPs in one /24): re-factorize the labels.
    kept = [lab for lab in dict.fromkeys(labels) if lab is not None]
    slot = {lab: i for i, lab in enumerate(kept)}
    remap = np.array([slot[lab] if lab is not None else -1 for lab in labels] or [-1], np.int64)
    return _Source(remap[codes] if len(codes) else codes, kept)


def _asn_source(asn: np.ndarray) -> _Source:
    values, codes = np.unique(asn.astype(np.int64), return_inverse=True)
    labels = [f"asn:{v}" for v in values.tolist()]
    codes = codes.astype(np.int64)
    codes[asn == 0] = -1  # unknown ASN: no evidence
    return _Source(codes, labels)


def _templated(simhash: np.ndarray, account: np.ndarray, band: np.ndarray, max_hamming: int) -> np.ndarray:
    """Per distinct (simhash, account): has a near-duplicate partner in the same band value."""
    order = np.lexsort((simhash, band))
    s, a, b = simhash[order], account[order], band[order]
    marked = np.zeros(len(s), bool)
    for k in range(1, min(_WINDOW, len(s) - 1) + 1):
        pair = (b[k:] == b[:-k]) & (np.bitwise_count(s[k:] ^ s[:-k]) <= max_hamming)
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
    """(band, band value, account, ts, sample) of templated distinct simhashes of the batch."""
    present = simhash != 0
    s, a, t = _distinct_simhashes(simhash[present], account[present], ts[present])
    n_batch = len(s)
    # The carry joins the near-duplicate check but yields no observations itself.
    s_all = np.concatenate([s, carry.simhash])
    a_all = np.concatenate([a, carry_codes])
    mask = np.uint64((1 << cfg.band_bits) - 1)
    parts: list[tuple[np.ndarray, ...]] = []
    for band in range(cfg.bands):
        values = (s_all >> np.uint64(band * cfg.band_bits)) & mask
        keep = np.flatnonzero(_templated(s_all, a_all, values, cfg.max_hamming)[:n_batch])
        parts.append((np.full(len(keep), band, np.int64), values[keep].astype(np.int64), a[keep], t[keep], s[keep]))
    return tuple(np.concatenate(cols) for cols in zip(*parts, strict=True))  # type: ignore[return-value]


def extract_observations(
    batch: LinkColumns, template: TemplateConfig, carry: TemplateCarry | None = None
) -> tuple[Observations, AccountSummary, TemplateCarry]:
    """The batch's distinct link observations, its per-account summary and the carry for the next batch.

    Never raises on valid decoded input; an empty batch gives empty results (and the carry unchanged).
    """
    carry = carry or TemplateCarry.empty()
    raw = batch.raw
    ts = np.asarray(raw["ts"], np.int64)
    accounts, codes_all = factorize([*batch.account_ids, *carry.accounts.tolist()])
    acc = codes_all[: len(batch)]
    carry_codes = codes_all[len(batch):]

    sources = [
        _string_source(raw["payment_fingerprint"], _pay_feature),  # type: ignore[arg-type]
        _string_source(raw["client_ip"], ip_prefix),  # type: ignore[arg-type]
        _asn_source(np.asarray(raw["asn"])),
        _string_source(raw["user_agent"], ua_feature),  # type: ignore[arg-type]
    ]
    # One global feature code space: each source's codes shifted past the previous sources'.
    labels: list[str] = []
    f_parts, a_parts, t_parts, s_parts = [], [], [], []
    for src in sources:
        valid = src.codes >= 0
        f_parts.append(src.codes[valid] + len(labels))
        a_parts.append(acc[valid])
        t_parts.append(ts[valid])
        s_parts.append(np.zeros(int(valid.sum()), np.uint64))
        labels.extend(src.labels)

    simhash = np.asarray(raw["prompt_simhash"], np.uint64)
    band, value, t_acc, t_ts, t_sample = _template_observations(simhash, acc, ts, carry, carry_codes, template)
    tpl_base = len(labels)
    f_parts.append(tpl_base + (band << template.band_bits) + value)
    a_parts.append(t_acc)
    t_parts.append(t_ts)
    s_parts.append(t_sample.astype(np.uint64))

    feature = np.concatenate(f_parts)
    account = np.concatenate(a_parts)
    event_ts = np.concatenate(t_parts)
    sample = np.concatenate(s_parts)
    # Distinct (feature, account), keeping the earliest event (smallest sample on ties).
    order = np.lexsort((sample, event_ts, account, feature))
    feature, account, event_ts, sample = feature[order], account[order], event_ts[order], sample[order]
    first = np.ones(len(feature), bool)
    first[1:] = (feature[1:] != feature[:-1]) | (account[1:] != account[:-1])
    feature, account, event_ts, sample = feature[first], account[first], event_ts[first], sample[first]

    used, feature_index = np.unique(feature, return_inverse=True)
    names = [labels[code] if code < tpl_base else _tpl_feature(code - tpl_base, template.band_bits)
             for code in used.tolist()]
    observations = Observations(names, accounts, feature_index.astype(np.int64), account, event_ts, sample)
    return observations, _summary(accounts, acc, ts), _next_carry(batch, simhash, ts, carry, template)


def _tpl_feature(code: int, band_bits: int) -> str:
    band, value = code >> band_bits, code & ((1 << band_bits) - 1)
    return f"tpl:{band}:{value:0{(band_bits + 3) // 4}x}"


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
