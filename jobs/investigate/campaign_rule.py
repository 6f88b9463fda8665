"""When linked accounts are a campaign: the score at which the rules file's cluster rule would page.

A cluster below that score (say two accounts sharing one company card, score 30) is shown as
"linked accounts (below the campaign threshold)", not as a campaign, by ``investigate`` and ``report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pipeline.alerting.rules import CLUSTER, PAGE, RulesError, load_rules, lower_bound

LINKED_BELOW: Final = "linked accounts (below the campaign threshold)"


def campaign_threshold(rules_path: Path | None = None) -> float | None:
    """The lowest score bound (``score >= N``, see ``rules.lower_bound``) of the paging cluster rules in the
    rules file (default the packaged one); None when no paging cluster rule bounds the score (every cluster
    is then shown as linked accounts).

    Raises pipeline.alerting.rules.RulesError naming the file when it is invalid.
    """
    found = []
    for r in load_rules(rules_path).rules:
        if r.rule.subject == CLUSTER and r.rule.mode == PAGE:
            try:
                found.append(lower_bound(r.rule, "score"))
            except RulesError:
                continue  # a cluster rule not bounded by score says nothing about campaign scores
    return min(found) if found else None


def is_campaign(score: float, threshold: float | None) -> bool:
    return threshold is not None and score >= threshold
