"""The allow-list (``DW_ALLOWLIST``): verified partners, internal evaluation keys, red-team accounts.

A versioned YAML file, validated at start (``AllowListError`` names the file and the entry). Each
entry matches one account_id, api_key_id, payment_fingerprint or asn and applies to events before
its expiry in event time; entries on keys, cards or ASNs reach an account through the events of a
batch (``links_in_batch``). Effects and fields: docs/alerting.md, "Allow-list".
"""

from __future__ import annotations

import logging
import time as wall_clock
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config_file import load_model_file, repeated

log = logging.getLogger(__name__)

MATCH_FIELDS: Final = ("account_id", "api_key_id", "payment_fingerprint", "asn")
EXEMPT: Final = "exempt"
SUPPRESSED_PREFIX: Final = "allowlist:"


class AllowListError(ValueError):
    """The allow-list file is invalid; the message names the file and the entry."""


class RaiseThreshold(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    raise_threshold: float = Field(gt=0, le=100)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    account_id: str | None = None
    api_key_id: str | None = None
    payment_fingerprint: str | None = None
    asn: int | None = Field(None, ge=0, le=2**32 - 1)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: datetime
    effect: Literal["exempt"] | RaiseThreshold
    rules: tuple[str, ...] = ()  # empty: every rule

    @field_validator("expires", mode="before")
    @classmethod
    def _day_means_its_end(cls, value: object) -> object:
        # "expires: 2027-01-31" lasts through that day (UTC).
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time.max, tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _one_match(self) -> Entry:
        given = [f for f in MATCH_FIELDS if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"entry {self.id!r}: give exactly one of {', '.join(MATCH_FIELDS)} "
                             f"(got {given or 'none'})")
        return self

    @property
    def match_field(self) -> str:
        return next(f for f in MATCH_FIELDS if getattr(self, f) is not None)

    @property
    def match_value(self) -> str:
        return str(getattr(self, self.match_field))

    @property
    def expires_ms(self) -> int:
        when = self.expires if self.expires.tzinfo else self.expires.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)

    @property
    def raise_to(self) -> float | None:
        return None if self.effect == EXEMPT else self.effect.raise_threshold  # type: ignore[union-attr]

    @property
    def suppressed_by(self) -> str:
        return SUPPRESSED_PREFIX + self.id

    def applies(self, rule: str, at_ms: int) -> bool:
        return at_ms < self.expires_ms and (not self.rules or rule in self.rules)


class AllowListFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    entries: list[Entry] = Field(default_factory=list)

    @field_validator("entries")
    @classmethod
    def _unique_ids(cls, entries: list[Entry]) -> list[Entry]:
        if twice := repeated([e.id for e in entries]):
            raise ValueError(f"entry ids must be unique; repeated: {twice}")
        return entries


@dataclass(frozen=True)
class Decision:
    """What the allow-list says about one firing: exempt, or the raised threshold, and by which entry."""

    entry: Entry

    @property
    def exempt(self) -> bool:
        return self.entry.effect == EXEMPT


class AllowList:
    """The entries, indexed by what they match."""

    def __init__(self, entries: Iterable[Entry] = (), source: Path | None = None) -> None:
        self.entries = tuple(entries)
        self.source = source
        self.by_id = {e.id: e for e in self.entries}
        self._index: dict[str, dict[str, list[Entry]]] = {f: {} for f in MATCH_FIELDS}
        for e in self.entries:
            self._index[e.match_field].setdefault(e.match_value, []).append(e)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def needs_batch_links(self) -> bool:
        """Whether some entry matches keys, cards or ASNs (the batch's events must be looked at)."""
        return any(self._index[f] for f in MATCH_FIELDS[1:])

    def links_in_batch(self, account_ids: Sequence[str], raw: Mapping[str, Any]) -> dict[str, set[str]]:
        """Account → ids of entries reached through this batch's API keys, cards or ASNs.

        Cheap when nothing matches: one set intersection per matched field.
        """
        out: dict[str, set[str]] = {}
        for field in MATCH_FIELDS[1:]:
            index = self._index[field]
            if not index or field not in raw:
                continue
            values: Sequence[Any] = raw[field]
            text = [str(v) for v in values] if field == "asn" else values
            if not index.keys() & set(text):
                continue
            for account, value in zip(account_ids, text, strict=True):
                for entry in index.get(value, ()):
                    out.setdefault(account, set()).add(entry.id)
        return out

    def may_cover(self, account_id: str, linked: Iterable[str]) -> bool:
        """Whether some entry names the account or was reached by it (whatever the rule or time)."""
        return account_id in self._index["account_id"] or any(i in self.by_id for i in linked)

    def decide(self, rule: str, account_id: str, linked: Iterable[str], at_ms: int) -> Decision | None:
        """The entry governing ``rule`` for the account at event time ``at_ms``: an exemption first,
        else the highest raised threshold; None when no entry applies."""
        candidates = list(self._index["account_id"].get(account_id, ()))
        candidates += [self.by_id[i] for i in linked if i in self.by_id]
        live = sorted((e for e in candidates if e.applies(rule, at_ms)), key=lambda e: e.id)
        exempt = [e for e in live if e.effect == EXEMPT]
        if exempt:
            return Decision(exempt[0])
        raised = sorted(live, key=lambda e: -(e.raise_to or 0.0))
        return Decision(raised[0]) if raised else None


def load_allowlist(path: Path | None) -> AllowList:
    """Read and validate ``path`` (None: an empty list); raises AllowListError naming the entry."""
    if path is None:
        return AllowList()
    parsed = load_model_file(AllowListFile, path, AllowListError)
    now_ms = int(wall_clock.time() * 1000)
    for e in parsed.entries:
        if e.expires_ms <= now_ms:  # still loaded: it applies to older events (replays, backtests)
            log.warning("allow-list %s: entry %r (owner %s) expired on %s", path, e.id, e.owner, e.expires)
    return AllowList(parsed.entries, path)
