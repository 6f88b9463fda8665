"""The bench's input: loadgen traffic over N events and M accounts, as JSON messages and as containers.

Loadgen's archetypes decide every field of every event; only the account id is
reassigned, round robin over M bench accounts, so that exactly M distinct
accounts are active (loadgen's own population is a few hundred accounts, and
building 100k of them takes minutes), and with it the fields that identify an
organisation to the linking stages (client IP network, payment card, network
ASN, client user agent and prompt templates; see ``_as_bench_account``). Keys and partitions follow the contract
(key = account id, Kafka's murmur2 partitioner).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from jobs.bench.options import BenchOptions
from jobs.json_bytes import event_bytes
from jobs.loadgen import ScenarioConfig, generate_batches
from pipeline.decode.batch_rules import Columns
from pipeline.hashing import blake2b64, kafka_partition
from pipeline.producer.batch_encoder import columns_from_events, columns_to_wire, encode_wire, take_rows
from pipeline.producer.batching_producer import DEFAULT_MAX_EVENTS


@dataclass
class Container:
    partition: int
    value: bytes
    events: int


@dataclass
class BenchData:
    events: int
    accounts: int
    partitions: int
    json_values: list[bytes]  # one JSON event per message, in generation order
    keys: list[bytes]  # account id per event
    part: np.ndarray  # Kafka partition per event
    wire: Columns  # every event as validated columns (for containers and paced runs)
    containers: list[Container]  # DEFAULT_MAX_EVENTS events each, per partition in order

    @property
    def json_bytes(self) -> int:
        return sum(map(len, self.json_values))

    @property
    def batched_bytes(self) -> int:
        return sum(len(c.value) for c in self.containers)


def account_partitions(names: list[str], partitions: int) -> np.ndarray:
    return np.fromiter((kafka_partition(n.encode(), partitions) for n in names), np.int16, len(names))


def containers_for(wire: Columns, part: np.ndarray, partitions: int, size: int) -> list[Container]:
    """Each partition's events, in order, cut into containers of ``size`` events."""
    out = []
    for p in range(partitions):
        rows = np.flatnonzero(part == p)
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            out.append(Container(p, encode_wire(len(chunk), take_rows(wire, chunk)), len(chunk)))
    return out


# One bench account in this many sends the loadgen simhashes unchanged: a population
# sharing prompt templates (a fleet, apps on one framework's system prompt), so the
# bench's linking load includes shared templates, popular features and edges.
SHARED_TEMPLATES_EVERY = 100


class _Identity:
    """Each bench account's ASN and user agent (those of the first event it was given) and simhash mask."""

    def __init__(self, seed: int) -> None:
        self.asn: dict[int, int] = {}
        self.user_agent: dict[int, str] = {}
        self.seed = seed

    def simhash_mask(self, k: int) -> int:
        if k % SHARED_TEMPLATES_EVERY == 0:
            return 0
        return int.from_bytes(blake2b64(f"{self.seed}:{k}"), "little")


def _as_bench_account(event: dict[str, Any], k: int, names: list[str], identity: _Identity) -> None:
    """Event ``event`` now comes from bench account ``k``, with that account's own network, card and client.

    Round robin hands each bench account events of many loadgen accounts: were their
    client IPs, payment fingerprints, ASNs and user agents kept, every bench account
    would share a /24 and a card with thousands of others and switch network and SDK
    on every call, which no real traffic looks like (and the linking stages would see
    one giant cluster). So the address keeps its host part inside a /24 (IPv6: a /48)
    of the account's own, the card is the account's, and the ASN and user agent are
    those of the account's first event. Likewise prompt templates: loadgen's templates
    belong to loadgen accounts, so every bench account would share templates with
    every other; the simhash is xor-ed with a mask of the bench account's own, which
    keeps near-duplicates within an account near-duplicates and makes those of
    different accounts unrelated, except in the 1 of ``SHARED_TEMPLATES_EVERY``
    accounts that share templates.
    """
    event["account_id"] = names[k]
    ip = event["client_ip"]
    if ":" in ip:
        event["client_ip"] = f"2001:{0xdb8 + (k >> 16):x}:{k & 0xFFFF:x}::{ip.rsplit(':', 1)[1] or '1'}"
    else:
        event["client_ip"] = f"{11 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}.{ip.rsplit('.', 1)[1]}"
    if "payment_fingerprint" in event:
        event["payment_fingerprint"] = f"card-{k:07d}"
    if "asn" in event:
        event["asn"] = identity.asn.setdefault(k, event["asn"])
    if "user_agent" in event:
        event["user_agent"] = identity.user_agent.setdefault(k, event["user_agent"])
    simhash = event.get("prompt_simhash")
    mask = identity.simhash_mask(k)
    if simhash and mask:
        event["prompt_simhash"] = f"{int(simhash, 16) ^ mask:016x}"


def prepare(opts: BenchOptions, log: Callable[[str], None]) -> BenchData:
    # Millions of new container objects make the cyclic collector rescan a growing heap
    # over and over; nothing made here is cyclic garbage, so it is paused meanwhile.
    gc.disable()
    try:
        return _prepare(opts, log)
    finally:
        gc.enable()


def _prepare(opts: BenchOptions, log: Callable[[str], None]) -> BenchData:
    n, m = opts.events, opts.accounts
    names = [f"bench-{i:07d}" for i in range(m)]
    encoded_names = [s.encode() for s in names]
    config = ScenarioConfig(seed=opts.seed, rate_eps=opts.event_time_rate,
                            duration_s=math.ceil(n / opts.event_time_rate) + 1)
    json_values: list[bytes] = []
    keys: list[bytes] = []
    columns: dict[str, list[Any]] = {}
    done = 0
    identity = _Identity(opts.seed)
    for batch in generate_batches(config):
        batch = batch[: n - done]
        for i, event in enumerate(batch, done):
            _as_bench_account(event, i % m, names, identity)
        json_values.extend(map(event_bytes, batch))
        keys.extend(encoded_names[i % m] for i in range(done, done + len(batch)))
        for name, values in columns_from_events(batch).items():
            columns.setdefault(name, []).extend(values)
        done += len(batch)
        if done >= n:
            break
    if done < n:
        raise RuntimeError(f"loadgen produced {done} events, {n} wanted")
    log(f"bench: {n:,} events generated over {m:,} accounts; encoding containers")
    _, wire = columns_to_wire(columns)  # validates every event once
    del columns
    part = account_partitions(names, opts.partitions)[np.arange(n) % m]
    containers = containers_for(wire, part, opts.partitions, DEFAULT_MAX_EVENTS)
    return BenchData(n, min(n, m), opts.partitions, json_values, keys, part, wire, containers)


def json_messages(data: BenchData) -> chain[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of every JSON message."""
    return chain(zip(data.part.tolist(), data.keys, data.json_values, strict=True))
