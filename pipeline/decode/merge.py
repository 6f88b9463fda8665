"""Concatenate decoded batches in input order (one fetched batch may mix encodings)."""

from __future__ import annotations

from itertools import chain

import numpy as np

from pipeline.decode.batch import decoded_batch
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.decode.rejects import Rejected


def empty_decoded(rejects: list[Rejected] | None = None) -> DecodedBatch:
    """No valid events (columns of the JSON decoder's types, zero rows), plus ``rejects``."""
    empty = decode_json_batch([], [], [], [], max_message_bytes=1, max_ts_ms=0)
    empty.rejects.extend(rejects or [])
    return empty


def concat_decoded(parts: list[DecodedBatch]) -> DecodedBatch:
    """Rows and rejects of ``parts``, in order; columns keep their kinds (arrays or lists)."""
    rejects = list(chain.from_iterable(p.rejects for p in parts))
    rows = [p for p in parts if len(p)]
    if not rows:
        return empty_decoded(rejects)
    if len(rows) == 1:
        only = rows[0]
        return DecodedBatch(only.account_ids, only.kernel, only.raw, rejects)
    # Built as every decoder builds its batch, so the kernel columns are views of the raw ones again.
    return decoded_batch(lambda name, _dtype: np.concatenate([p.raw[name] for p in rows]),
                         lambda name: list(chain.from_iterable(p.raw[name] for p in rows)),
                         np.concatenate([p.kernel["ip_key"] for p in rows]), rejects)
