"""Concatenate decoded batches in input order (one fetched batch may mix encodings)."""

from __future__ import annotations

from itertools import chain

import numpy as np

from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.decode.rejects import Rejected


def empty_decoded(rejects: list[Rejected] | None = None) -> DecodedBatch:
    """No valid events (columns of the JSON decoder's types, zero rows), plus ``rejects``."""
    empty = decode_json_batch([], [], [], [], max_message_bytes=1, max_ts_ms=0)
    empty.rejects.extend(rejects or [])
    return empty


def _concat_column(parts: list[object]) -> object:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)  # type: ignore[arg-type]
    return list(chain.from_iterable(parts))  # type: ignore[arg-type]


def concat_decoded(parts: list[DecodedBatch]) -> DecodedBatch:
    """Rows and rejects of ``parts``, in order; columns keep their kinds (arrays or lists)."""
    rejects = list(chain.from_iterable(p.rejects for p in parts))
    rows = [p for p in parts if len(p)]
    if not rows:
        return empty_decoded(rejects)
    if len(rows) == 1:
        only = rows[0]
        return DecodedBatch(only.account_ids, only.kernel, only.raw, rejects)
    first = rows[0]
    return DecodedBatch(
        list(chain.from_iterable(p.account_ids for p in rows)),
        {name: np.concatenate([p.kernel[name] for p in rows]) for name in first.kernel},
        {name: _concat_column([p.raw[name] for p in rows]) for name in first.raw},  # type: ignore[misc]
        rejects,
    )
