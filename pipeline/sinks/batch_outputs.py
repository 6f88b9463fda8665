"""Write one processed batch to ClickHouse: raw events, signatures, alerts, rejects.

Each INSERT carries a deduplication token derived from the batch's offsets (raw
events, rejects) or from the rows' keys and counts (signatures, alerts), so a
block that is written again after a retry is not stored twice; the tables are
also ReplacingMergeTree on their natural keys, which covers re-reads after a
restart that cut the input into different batches.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from pipeline.alerting.alert_rows import AlertRows
from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import DetectionOutput
from pipeline.sinks.clickhouse import ClickHouseWriter

SAMPLE_BYTES = 256


def batch_token(partitions: list[int], offsets: list[int]) -> str:
    """Stable id of a batch: first and last offset per partition."""
    spans: dict[int, list[int]] = {}
    for p, o in zip(partitions, offsets, strict=True):
        span = spans.setdefault(p, [o, o])
        span[0] = min(span[0], o)
        span[1] = max(span[1], o)
    return ";".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(spans.items()))


def content_token(prefix: str, keys: list[str], numbers: np.ndarray) -> str:
    """Token from a block's natural keys: the same rows written twice dedupe, others never."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update("\x1f".join(keys).encode())
    digest.update(np.ascontiguousarray(numbers).tobytes())
    return f"{prefix}:{digest.hexdigest()}"


def alert_columns(alerts: AlertRows) -> dict[str, object]:
    return alerts.columns()


def reject_columns(decoded: DecodedBatch, received_ms: int) -> dict[str, object]:
    r = decoded.rejects
    return {
        "kafka_partition": np.array([x.partition for x in r], np.uint16),
        "kafka_offset": np.array([x.offset for x in r], np.uint64),
        "received_at": np.full(len(r), received_ms, np.int64),
        "reason": [x.reason for x in r],
        "field": [x.field for x in r],
        "detail": [x.detail for x in r],
        "size_bytes": np.array([len(x.value) for x in r], np.uint32),
        "sample": [x.value[:SAMPLE_BYTES].decode("utf-8", errors="replace") for x in r],
    }


def write_batch_outputs(
    writer: ClickHouseWriter,
    decoded: DecodedBatch,
    output: DetectionOutput,
    token: str,
    *,
    store_raw: bool,
) -> float:
    """Insert everything the batch produced; returns the seconds spent inserting."""
    started = time.perf_counter()
    if store_raw and len(decoded):
        writer.write("api_calls", decoded.raw, dedup_token=f"raw:{token}")
    if output.signature_rows:
        sig = output.signatures
        writer.write("signatures_1m", sig, dedup_token=content_token(
            "sig", sig["account_id"],  # type: ignore[arg-type]
            np.stack([np.asarray(sig[c], np.int64) for c in ("window_start", "calls", "prompt_tokens")])))
    keys = output.key_signatures
    if len(keys["api_key_id"]):  # type: ignore[arg-type]
        writer.write("key_signatures_1m", keys, dedup_token=content_token(
            "keysig", keys["api_key_id"],  # type: ignore[arg-type]
            np.stack([np.asarray(keys[c], np.int64) for c in ("window_start", "calls")])))
    if len(output.alerts):
        alerts = output.alerts
        writer.write("alerts", alert_columns(alerts),
                     dedup_token=content_token("alert", alerts.alert_id, alerts.fired_ts_ms))
    if decoded.rejects:
        writer.write("rejected_events", reject_columns(decoded, int(time.time() * 1000)),
                     dedup_token=f"rej:{token}")
    return time.perf_counter() - started
