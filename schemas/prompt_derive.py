"""Everything the contract derives from ``prompt_text``, in one place.

``prompt_text`` is only a carrier: when it is present, each field of
``DERIVED_FIELDS`` the event lacks (absent or null) is derived from it, and the
text is then dropped. The contract model (``schemas.event``), hence the JSON
decoders, and the DWB1 producer (``pipeline.producer.batch_encoder``) all call
``derive_from_prompt``, so every path decodes the same values. The fast JSON path
derives a whole batch at once with ``derive_many``: the same values, each distinct
text normalised once, the SimHash bit votes counted in NumPy and the phrase lists
matched in one scan over all texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from schemas.prompt_cues import CUES, OTHER_TOPIC
from schemas.prompt_hashing import hash_of_normalised, normalise_prompt, shingle_hashes, simhash_of_normalised

DERIVED_FIELDS: tuple[str, ...] = ("prompt_hash", "prompt_simhash", "topic", "elicits_reasoning")


def derive_from_prompt(text: str, fields: Iterable[str]) -> dict[str, str | bool]:
    """Values of the given derived fields for one prompt (normalised once)."""
    fields = tuple(fields)
    if not fields:
        return {}
    norm = normalise_prompt(text)
    out: dict[str, str | bool] = {}
    for name in fields:
        if name == "prompt_hash":
            out[name] = hash_of_normalised(norm)
        elif name == "prompt_simhash":
            out[name] = simhash_of_normalised(norm)
        elif name == "topic":
            out[name] = CUES.topic(norm)
        elif name == "elicits_reasoning":
            out[name] = CUES.elicits_reasoning(norm)
        else:
            raise ValueError(f"{name!r} is not derived from prompt_text")
    return out


def derive_many(texts: Sequence[str], fields: Iterable[str]) -> dict[str, list[str | bool]]:
    """``derive_from_prompt`` for many prompts: per field, its value for each text, in order.

    Equal to ``[derive_from_prompt(t, fields)[name] for t in texts]`` for every field;
    callers pass distinct texts (a batch derives each text once).
    """
    fields = tuple(fields)
    for name in fields:
        if name not in DERIVED_FIELDS:
            raise ValueError(f"{name!r} is not derived from prompt_text")
    norms = [normalise_prompt(t) for t in texts]
    out: dict[str, list[str | bool]] = {}
    if "prompt_hash" in fields:
        out["prompt_hash"] = [hash_of_normalised(norm) for norm in norms]
    if "prompt_simhash" in fields:
        out["prompt_simhash"] = [f"{v:016x}" for v in _simhashes(norms).tolist()]
    if "topic" in fields or "elicits_reasoning" in fields:
        # One scan over all texts: a normalised text has no newline (whitespace is collapsed to
        # spaces), no phrase spans one and the phrase lists' look-behind sees a non-word character
        # at each text's start, exactly as at a string's start.
        joined = "\n".join(norms)
        if joined.count("\n") != max(len(norms) - 1, 0):
            raise AssertionError("a normalised prompt holds a newline")  # normalise_prompt changed
        starts = np.cumsum([0, *(len(norm) + 1 for norm in norms[:-1])]) if norms else np.zeros(0, np.int64)
        if "topic" in fields:
            out["topic"] = [*_topics(joined, starts)]
        if "elicits_reasoning" in fields:
            hit = np.zeros(len(norms), np.bool_)
            hit[_text_of([m.start() for m in CUES.elicit.finditer(joined)], starts)] = True
            out["elicits_reasoning"] = hit.tolist()
    return {name: out[name] for name in fields}


def _text_of(positions: list[int], starts: np.ndarray) -> np.ndarray:
    """Index of the text each position of the joined texts falls in."""
    return np.searchsorted(starts, np.asarray(positions, np.int64), side="right") - 1


def _topics(joined: str, starts: np.ndarray) -> list[str]:
    """``CUES.topic`` of each text: phrase hits counted per (text, topic), most hits, ties to the earlier topic."""
    column = {topic: c for c, topic in reversed(list(enumerate(CUES.topics)))}  # first listed wins
    where: list[int] = []
    which: list[int] = []
    for m in CUES.topic_phrases.finditer(joined):
        where.append(m.start())
        which.append(column[CUES.topic_of[m.group()]])
    hits = np.zeros((starts.size, len(CUES.topics)), np.int64)
    np.add.at(hits, (_text_of(where, starts), np.asarray(which, np.int64)), 1)
    names = np.array(CUES.topics, dtype=object)[hits.argmax(axis=1)]
    names[hits.max(axis=1, initial=0) == 0] = OTHER_TOPIC
    return names.tolist()  # type: ignore[no-any-return]


def _simhashes(norms: Sequence[str]) -> np.ndarray:
    """``simhash_of_normalised`` of each text as uint64: the bit votes of many shingles counted at once."""
    out = np.zeros(len(norms), np.uint64)
    hashes: list[int] = []
    counts: list[int] = []
    first = 0
    for k, norm in enumerate(norms):
        shingles = shingle_hashes(norm)
        hashes.extend(shingles)
        counts.append(len(shingles))
        if len(hashes) >= _SHINGLES_PER_VOTE or k == len(norms) - 1:  # bounded memory: 64 bytes a shingle
            out[first : k + 1] = _majority_bits(hashes, np.array(counts, np.int64))
            hashes, counts, first = [], [], k + 1
    return out


_SHINGLES_PER_VOTE = 1 << 16


def _majority_bits(hashes: list[int], counts: np.ndarray) -> np.ndarray:
    """Per text (``counts`` consecutive hashes each), the bits set in more of its hashes than not."""
    # Bit b of each hash as column b (little-endian bytes, least significant bit first).
    bits = np.unpackbits(np.array(hashes, "<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")
    ones = np.add.reduceat(bits, np.concatenate([[0], np.cumsum(counts[:-1])]), axis=0, dtype=np.int64)
    # SimHash's weight is ones - zeros: the bit is set when it is positive.
    return np.packbits(2 * ones > counts[:, None], axis=1, bitorder="little").view("<u8").ravel()
