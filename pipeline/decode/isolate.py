"""A decoder that never takes the worker down: a message it chokes on becomes a reject.

The decoders promise one row or one reject per message and never an exception.
Should a new input still break that promise, ``decode_isolating`` decodes the
batch again message by message, keeps every message that decodes, and rejects
the ones that raise with reason ``decoder_error`` (dead-lettered with the
exception in the detail), so one poison message cannot stall a partition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.merge import concat_decoded, empty_decoded
from pipeline.decode.rejects import Rejected

log = logging.getLogger(__name__)

DECODER_ERROR = "decoder_error"

Decoder = Callable[[Sequence[bytes], Sequence[bytes | None], Sequence[int], Sequence[int]], DecodedBatch]


def decode_isolating(decode: Decoder, values: Sequence[bytes], keys: Sequence[bytes | None],
                     partitions: Sequence[int], offsets: Sequence[int]) -> DecodedBatch:
    """``decode(values, keys, partitions, offsets)``, falling back to one message at a time if it raises."""
    try:
        return decode(values, keys, partitions, offsets)
    except Exception:
        if not values:
            raise  # not a message's fault
        log.exception("decoder raised on a batch of %d messages; decoding them one by one", len(values))
    parts: list[DecodedBatch] = []
    for value, key, part, offset in zip(values, keys, partitions, offsets, strict=True):
        try:
            parts.append(decode([value], [key], [part], [offset]))
        except Exception as exc:
            detail = f"the decoder raised {type(exc).__name__}: {exc}"[:1000]
            parts.append(empty_decoded([Rejected(part, offset, key, value, DECODER_ERROR, "", detail)]))
    return concat_decoded(parts)
