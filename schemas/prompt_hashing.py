"""The prompt fingerprints of the event contract, derived from prompt text.

``prompt_hash``: 64-bit hash of the normalised prompt (exact duplicates).
``prompt_simhash``: 64-bit SimHash of the prompt's word 3-shingles (near duplicates
and templates: prompts that differ in a few words share most bits).
Gateways that compute these themselves should use the same normalisation so that
hashes from both sources agree; both are 16 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import re

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)


def normalise_prompt(text: str) -> str:
    """Case-folded, whitespace-collapsed prompt: trivial edits map to one hash."""
    return _SPACE.sub(" ", text.casefold()).strip()


def blake2b64(text: str) -> bytes:
    """8-byte BLAKE2b digest of ``text``'s UTF-8 bytes: the contract's 64-bit string hash (``prompt_hash``,
    big-endian, and the shingles of ``prompt_simhash``), and the pipeline's stable string hash
    (``pipeline.hashing``: user agents, topics, fingerprints). Defined here because schemas import nothing
    from pipeline."""
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def prompt_hash_hex(text: str) -> str:
    return hash_of_normalised(normalise_prompt(text))


def prompt_simhash_hex(text: str) -> str:
    return simhash_of_normalised(normalise_prompt(text))


def hash_of_normalised(norm: str) -> str:
    """``prompt_hash`` of an already normalised prompt (callers deriving several fields normalise once)."""
    return blake2b64(norm).hex()


def shingle_hashes(norm: str) -> list[int]:
    """The 64-bit hashes of a normalised prompt's word 3-shingles (one empty shingle for a prompt without
    words): what ``prompt_simhash`` votes over."""
    words = _WORD.findall(norm)
    shingles = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))] if words else [""]
    return [int.from_bytes(blake2b64(shingle), "big") for shingle in shingles]


def simhash_of_normalised(norm: str) -> str:
    """``prompt_simhash`` of an already normalised prompt."""
    weights = [0] * 64
    for h in shingle_hashes(norm):
        for bit in range(64):
            weights[bit] += 1 if (h >> bit) & 1 else -1
    value = 0
    for bit in range(64):
        if weights[bit] > 0:
            value |= 1 << bit
    return f"{value:016x}"
