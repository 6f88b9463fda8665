"""Builders for the linking tests: decoded batches without going through JSON."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.linking.config import LinkingConfig, load_linking_config
from pipeline.linking.messages import MemberChanges, ObservationBatch
from pipeline.linking.stages import FeatureStage


@dataclass(frozen=True)
class Columns:
    """The part of pipeline.decode's DecodedBatch that linking reads (observations.LinkColumns)."""

    account_ids: list[str]
    raw: dict[str, Any]

    def __len__(self) -> int:
        return len(self.account_ids)


def make_batch(
    accounts: Sequence[str],
    *,
    ts: Sequence[int] | None = None,
    ip: Sequence[str] | None = None,
    asn: Sequence[int] | None = None,
    ua: Sequence[str] | None = None,
    pay: Sequence[str] | None = None,
    simhash: Sequence[int] | None = None,
    tls: Sequence[str] | None = None,
    h2: Sequence[str] | None = None,
) -> Columns:
    """A batch holding just the raw columns linking reads (defaults: nothing shared)."""
    n = len(accounts)
    raw: dict[str, object] = {
        "ts": np.asarray(ts if ts is not None else range(1_000, 1_000 + n), np.int64),
        "client_ip": list(ip) if ip is not None else [""] * n,
        "asn": np.asarray(asn if asn is not None else [0] * n, np.uint32),
        "user_agent": list(ua) if ua is not None else [""] * n,
        "payment_fingerprint": list(pay) if pay is not None else [""] * n,
        "prompt_simhash": np.asarray(simhash if simhash is not None else [0] * n, np.uint64),
        "tls_fingerprint": list(tls) if tls is not None else [""] * n,
        "http2_fingerprint": list(h2) if h2 is not None else [""] * n,
    }
    return Columns(list(accounts), raw)


class FakeBroker:
    """Topic partitions as lists; ``send`` has the publisher's signature and acknowledges at once."""

    def __init__(self) -> None:
        self.log: dict[tuple[str, int], list[bytes]] = {}

    async def send(self, topic: str, partition: int, value: bytes) -> asyncio.Future[None]:
        self.log.setdefault((topic, partition), []).append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def take(self, topic: str, partition: int) -> list[bytes]:
        return self.log.pop((topic, partition), [])


def _flip(rng: np.random.Generator, value: int, bits: int) -> int:
    for bit in rng.choice(64, bits, replace=False).tolist():
        value ^= 1 << bit
    return value


def fleet_scenario(seed: int = 1, batches: int = 3) -> tuple[list[Columns], dict[str, float]]:
    """A hydra-like fleet and the hard negatives around it, as decoded batches, plus each account's max score.

    * fleet-0..9: quiet (score 35); three cards, two hosting /24s, one ASN, one user agent, three templates;
    * tenant-0..5: unrelated cloud tenants in the fleet's /24, same ASN and user agent, own cards, free prompts;
    * sib-a, sib-b: a company's two organisations paying with one card;
    * chat-1: a chat app whose shared system prompt makes its own prompts near-duplicates.
    """
    rng = np.random.default_rng(seed)
    templates = [int(x) for x in rng.integers(1, 2**63, 3)]
    chat_template = int(rng.integers(1, 2**63))
    fleet_ips = ["52.14.7.10", "52.14.7.11", "52.14.9.20", "52.14.9.21"]
    rows: list[tuple[str, str, int, str, str, int]] = []  # account, ip, asn, ua, pay, simhash
    for _ in range(batches):
        for i in range(10):
            for _ in range(4):
                rows.append((f"fleet-{i}", fleet_ips[(i + int(rng.integers(0, 2))) % 4], 16509,
                             "python-requests/2.31.0", f"pf_fleet{i % 3}",
                             _flip(rng, templates[int(rng.integers(0, 3))], int(rng.integers(0, 4)))))
        for i in range(6):
            for _ in range(4):
                rows.append((f"tenant-{i}", f"52.14.7.{100 + i}", 16509, "python-requests/2.31.0", f"pf_t{i}",
                             int(rng.integers(1, 2**63))))
        for name, ip in (("sib-a", "73.162.4.5"), ("sib-b", "98.207.1.9")):
            rows.append((name, ip, 7922, "curl/8.5.0", "pf_sibling", int(rng.integers(1, 2**63))))
        for _ in range(6):
            rows.append(("chat-1", "34.102.8.8", 15169, "OpenAI/NodeJS 4.52.0", "pf_chat",
                         _flip(rng, chat_template, int(rng.integers(0, 3)))))
    order = rng.permutation(len(rows))
    out = []
    for b, part in enumerate(np.array_split(order, batches)):
        chosen = [rows[i] for i in part.tolist()]
        out.append(make_batch(
            [r[0] for r in chosen], ts=[1_000_000 * (b + 1) + k for k in range(len(chosen))],
            ip=[r[1] for r in chosen], asn=[r[2] for r in chosen], ua=[r[3] for r in chosen],
            pay=[r[4] for r in chosen], simhash=[r[5] for r in chosen],
        ))
    scores = {f"fleet-{i}": 35.0 for i in range(10)}
    scores.update({f"tenant-{i}": 20.0 for i in range(6)})
    scores.update({"sib-a": 10.0, "sib-b": 10.0, "chat-1": 5.0})
    return out, scores


def share(features: MutableMapping[str, dict[str, object]], feature: str, accounts: Sequence[str], ts: int,
          config: LinkingConfig | None = None, samples: Sequence[int] | None = None) -> MemberChanges:
    """Stage A seeing ``accounts`` with ``feature`` at ``ts``: ``features`` updated, the changes for stage B."""
    n = len(accounts)
    batch = ObservationBatch("test", 0, [feature], list(accounts), [0] * n, list(range(n)), [ts] * n,
                             list(samples or [0] * n))
    return FeatureStage(features, config or load_linking_config()).handle(batch)
