"""Reasoning-elicitation and topic cues of a prompt, from a versioned phrase file.

``schemas.prompt_derive`` derives the contract's ``elicits_reasoning`` and ``topic`` here when a gateway
sends ``prompt_text`` instead. Phrases (``prompt_cues.v1.json``) are normalised as the prompt is
(``normalise_prompt``); each list is one regular expression whose alternation is a trie of its
phrases. Nothing of the text is kept. docs/signals.md, "Derived from prompt text (when the gateway sends it)".
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from schemas.prompt_hashing import normalise_prompt  # one normalisation for text and phrases

CUES_PATH = Path(__file__).with_name("prompt_cues.v1.json")
OTHER_TOPIC = "other"  # text was given but no topic phrase matched


@dataclass(frozen=True)
class PromptCues:
    """Compiled phrase lists of one version of the cue file."""

    version: int
    topics: tuple[str, ...]  # in file order (ties go to the earlier one), then OTHER_TOPIC
    elicit: re.Pattern[str]  # reasoning-elicitation and judge/rubric phrases
    topic_phrases: re.Pattern[str]
    topic_of: Mapping[str, str]  # normalised phrase -> topic

    def elicits_reasoning(self, normalised: str) -> bool:
        """Does the prompt ask for step-by-step reasoning or act-as-a-grader judging?"""
        return self.elicit.search(normalised) is not None

    def topic(self, normalised: str) -> str:
        """The topic with the most phrase hits; OTHER_TOPIC when none matches."""
        hits = Counter(map(self.topic_of.__getitem__, self.topic_phrases.findall(normalised)))
        if not hits:
            return OTHER_TOPIC
        best = max(hits.values())
        return next(t for t in self.topics if hits.get(t) == best)


def _trie_regex(phrases: Iterable[str]) -> str:
    """One alternation equivalent to the phrases, prefixes shared; longest match first."""
    trie: dict[str, Any] = {}
    for phrase in phrases:
        node = trie
        for ch in phrase:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a phrase

    def build(node: dict[str, Any]) -> str:
        ends = "" in node
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if ends:
            return (f"(?:{body})?" if len(alts) == 1 else body + "?")
        return body

    return build(trie)


def _compile(by_language: Mapping[str, list[str]], unbounded: frozenset[str]) -> re.Pattern[str]:
    bounded = {normalise_prompt(p) for lang, ps in by_language.items() if lang not in unbounded for p in ps}
    anywhere = {normalise_prompt(p) for lang, ps in by_language.items() if lang in unbounded for p in ps}
    # The look-ahead on the phrases' first characters is one set test per position:
    # without it re tries every first-level branch of the trie at every position (4x slower).
    parts = []
    if bounded:
        parts.append(r"(?<!\w)" + _first_chars(bounded) + _trie_regex(bounded))
    if anywhere:
        parts.append(_first_chars(anywhere) + _trie_regex(anywhere))
    return re.compile("|".join(parts))


def _first_chars(phrases: Iterable[str]) -> str:
    return "(?=[" + "".join(re.escape(c) for c in sorted({p[0] for p in phrases})) + "])"


def load_cues(path: Path = CUES_PATH) -> PromptCues:
    """Read and compile a cue file; a phrase listed under two topics is an error."""
    data = json.loads(path.read_text(encoding="utf-8"))
    unbounded = frozenset(data["no_word_boundary"])
    elicit: dict[str, list[str]] = {}
    for section in ("reasoning", "judge"):
        for lang, phrases in data[section].items():
            elicit.setdefault(lang, []).extend(phrases)
    topic_of: dict[str, str] = {}
    merged: dict[str, list[str]] = {}
    for topic, by_language in data["topics"].items():
        for lang, phrases in by_language.items():
            merged.setdefault(lang, []).extend(phrases)
            for p in phrases:
                key = normalise_prompt(p)
                if topic_of.setdefault(key, topic) != topic:
                    raise ValueError(f"{path.name}: phrase {p!r} is listed under {topic_of[key]!r} and {topic!r}")
    topics = (*data["topics"], OTHER_TOPIC)
    return PromptCues(data["version"], topics, _compile(elicit, unbounded), _compile(merged, unbounded),
                      MappingProxyType(topic_of))


CUES = load_cues()
