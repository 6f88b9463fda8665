"""Turn a merged batch of columns into event dicts that follow the contract exactly.

Columns become Python lists in one call each and dicts are built by one comprehension;
optional fields a client did not send are removed afterwards, touching only those rows.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from jobs.loadgen.archetypes import ENDPOINTS, MODELS, TOPICS
from jobs.loadgen.population import Population
from jobs.loadgen.texts import prompt_text

GeneratedEvent = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIXTEEN = re.compile(".{16}")
_ENDPOINTS = np.array(ENDPOINTS, dtype=object)
_MODELS = np.array(MODELS, dtype=object)
_TOPICS = np.array(TOPICS, dtype=object)


def rfc3339(ms: int) -> str:
    """``2026-02-12T09:30:00.123Z`` for epoch milliseconds."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def hex64(values: np.ndarray) -> list[str]:
    """16 lowercase hex characters per uint64, without a Python-level format call per value."""
    return _SIXTEEN.findall(values.astype(">u8").tobytes().hex())


class Renderer:
    """Renders batches of one population; event ids continue from batch to batch."""

    def __init__(self, population: Population, *, start_ms: int, id_prefix: str) -> None:
        tables = population.tables
        accounts = population.accounts
        self._start_ms = start_ms
        self._id_prefix = id_prefix
        self._seq = 0
        self._account_ids = np.array([a.account_id for a in accounts], dtype=object)
        self._payments = np.array([a.payment for a in accounts], dtype=object)
        self._no_payment = np.array([a.payment is None for a in accounts])
        self._languages = np.array([a.language for a in accounts], dtype=object)
        self._writes_text = np.array([a.language is not None for a in accounts])
        self._key_ids = np.array(tables.key_ids, dtype=object)
        self._ips = np.array(tables.ips, dtype=object)
        self._asns = np.array(tables.asns, dtype=object)
        self._no_asn = np.array([asn is None for asn in tables.asns])
        self._network_types = np.array(tables.network_types, dtype=object)
        self._countries = np.array(tables.countries, dtype=object)
        self._no_country = np.array([c is None for c in tables.countries])
        self._agents = np.array([c.agent for c in tables.clients], dtype=object)
        self._tls = np.array([c.tls for c in tables.clients], dtype=object)
        self._h2 = np.array([c.h2 for c in tables.clients], dtype=object)

    def render(self, batch: np.ndarray, rfc3339_rows: np.ndarray | None = None) -> list[GeneratedEvent]:
        n = batch.size
        seq, prefix = self._seq, self._id_prefix  # event id: config fingerprint + sequence number
        self._seq += n
        ts = (np.floor(batch["t"] * 1000.0).astype(np.int64) + self._start_ms).tolist()
        account, ip = batch["account"], batch["ip"]
        temperature = batch["temperature"].tolist()
        events = [
            {
                "event_id": event_id,
                "ts": ts_,
                "account_id": account_id,
                "api_key_id": key_id,
                "client_ip": client_ip,
                "asn": asn,
                "network_type": network_type,
                "country": country,
                "user_agent": user_agent,
                "endpoint": endpoint,
                "model": model,
                "status": status,
                "latency_ms": latency,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "reasoning_tokens": reasoning_tokens,
                "prompt_hash": prompt_hash,
                "prompt_simhash": prompt_simhash,
                "topic": topic,
                "elicits_reasoning": reason,
                "temperature": temp,
                "n": choices,
                "logprobs": logprobs,
                "logit_bias_count": logit_bias,
                "stream": stream,
                "payment_fingerprint": payment,
            }
            for (event_id, ts_, account_id, key_id, client_ip, asn, network_type, country, user_agent,
                 endpoint, model, status, latency, prompt_tokens, completion_tokens, reasoning_tokens,
                 prompt_hash, prompt_simhash, topic, reason, temp, choices, logprobs, logit_bias, stream,
                 payment)
            in zip(
                list(map(prefix.__add__, hex64(np.arange(seq, seq + n, dtype=np.uint64)))),
                ts,
                self._account_ids[account].tolist(),
                self._key_ids[batch["key"]].tolist(),
                self._ips[ip].tolist(),
                self._asns[ip].tolist(),
                self._network_types[ip].tolist(),
                self._countries[ip].tolist(),
                self._agents[batch["agent"]].tolist(),
                _ENDPOINTS[batch["endpoint"]].tolist(),
                _MODELS[batch["model"]].tolist(),
                batch["status"].tolist(),
                batch["latency"].tolist(),
                batch["prompt_tokens"].tolist(),
                batch["completion_tokens"].tolist(),
                batch["reasoning_tokens"].tolist(),
                hex64(batch["phash"]),
                hex64(batch["shash"]),
                _TOPICS[batch["topic"]].tolist(),
                batch["reason"].tolist(),
                temperature,
                batch["n"].tolist(),
                batch["logprobs"].tolist(),
                batch["logit_bias"].tolist(),
                batch["stream"].tolist(),
                self._payments[account].tolist(),
                strict=True,
            )
        ]  # fmt: skip
        # Fields the client (or the gateway's enrichment) did not send are absent, not null.
        for i in np.flatnonzero(np.isnan(batch["temperature"])).tolist():
            del events[i]["temperature"]
        for i in np.flatnonzero(self._no_asn[ip]).tolist():
            del events[i]["asn"]
        for i in np.flatnonzero(self._no_country[ip]).tolist():
            del events[i]["country"]
        for i in np.flatnonzero(self._no_payment[account]).tolist():
            del events[i]["payment_fingerprint"]
        agent = batch["agent"]
        _add_where(events, "tls_fingerprint", self._tls[agent], self._tls[agent] != "")
        _add_where(events, "http2_fingerprint", self._h2[agent], self._h2[agent] != "")
        _add_where(events, "top_p", batch["top_p"], ~np.isnan(batch["top_p"]))
        _add_where(events, "max_tokens", batch["max_tokens"], batch["max_tokens"] > 0)
        _add_where(events, "top_logprobs", batch["top_logprobs"], batch["top_logprobs"] >= 0)
        self._add_prompt_text(events, batch)
        if rfc3339_rows is not None:
            for i in rfc3339_rows.tolist():
                events[i]["ts"] = rfc3339(events[i]["ts"])
        return events

    def _add_prompt_text(self, events: list[GeneratedEvent], batch: np.ndarray) -> None:
        # Accounts writing in another language: the gateway sends the text and no classification,
        # so the pipeline derives topic and elicits_reasoning from it (schemas/prompt_derive.py).
        account = batch["account"]
        rows = np.flatnonzero(self._writes_text[account])
        for i, language, phash in zip(rows.tolist(), self._languages[account[rows]].tolist(),
                                      batch["phash"][rows].tolist(), strict=True):
            event = events[i]
            event["prompt_text"] = prompt_text(language, event.pop("topic"), event.pop("elicits_reasoning"), phash)


def _add_where(events: list[GeneratedEvent], name: str, column: np.ndarray, present: np.ndarray) -> None:
    rows = np.flatnonzero(present)
    for i, value in zip(rows.tolist(), column[rows].tolist(), strict=True):
        events[i][name] = value
