"""Everything the contract derives from ``prompt_text``, in one place.

``prompt_text`` is only a carrier: when it is present, each field of
``DERIVED_FIELDS`` the event lacks (absent or null) is derived from it, and the
text is then dropped. The contract model (``schemas.event``), hence the JSON
decoders, and the DWB1 producer (``pipeline.producer.batch_encoder``) all call
``derive_from_prompt``, so every path decodes the same values.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.prompt_cues import CUES
from schemas.prompt_hashing import hash_of_normalised, normalise_prompt, simhash_of_normalised

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
