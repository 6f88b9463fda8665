"""The terminal page of ``investigate``: the campaign (if any), then one page per account.

Long series are cut for the terminal (``--json`` and ``--html`` hold all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from jobs.investigate.campaign_rule import LINKED_BELOW
from jobs.investigate.result import AccountPage, ClusterInfo, Harvest, Investigation, Link
from pipeline.sinks.formats import render_table

MAX_ROWS: Final = 30
ALERT_COLUMNS: Final = ("fired at", "scored minute", "rule", "severity", "score", "mode", "suppressed by", "signals")
KIND_TITLES: Final = {"api_key": "API keys", "ip_net": "IP networks", "asn": "ASNs", "network_type": "network types",
                      "country": "countries", "user_agent": "user agents", "payment": "payment fingerprints"}


def render(inv: Investigation) -> str:
    out = [_header(inv)]
    if inv.cluster:
        out.append(_cluster(inv.cluster))
    if inv.target_kind == "cluster":
        whole = "whole campaign" if inv.cluster and inv.cluster.is_campaign else "all linked accounts"
        out.append(_section(f"Harvested output, {whole} (estimate)", _harvest(inv.harvest)))
    if inv.new_models:
        released = ", ".join(f"{m} (first call {_t(t)})" for m, t in inv.new_models.items())
        out.append(f"Newly released models in the period: {released}\n")
    out += [_page(p) for p in inv.pages]
    return "\n".join(out)


def _t(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _section(title: str, body: str) -> str:
    return f"== {title} ==\n{body}"


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], empty: str = "none") -> str:
    if not rows:
        return f"  ({empty})\n"
    shown = list(rows[:MAX_ROWS])
    text = render_table(columns, shown).rsplit("\n", 2)[0] + "\n"  # drop the row-count line
    if len(rows) > MAX_ROWS:
        text += f"… {len(rows) - MAX_ROWS} more (see --json or --html)\n"
    return "".join(f"  {line}\n" for line in text.splitlines())


def _header(inv: Investigation) -> str:
    since = f" since {_t(inv.since)}" if inv.since else ""
    kind = "campaign" if inv.cluster and inv.cluster.is_campaign else "linked accounts"
    what = f"{kind} {inv.target}" if inv.target_kind == "cluster" else f"account {inv.target}"
    return f"distillwatch investigate: {what} (database {inv.database}{since}; generated {_t(inv.generated_at)} UTC)\n"


def _cluster(c: ClusterInfo) -> str:
    state = "active" if c.active else "retired"
    lines = [f"cluster {c.cluster_id} ({state}): score {c.score:.1f}, {len(c.members)} members, "
             f"first linked {_t(c.first_seen)}, evidence up to {_t(c.updated)}",
             "score factors: " + ", ".join(f"{k} {v:.1f}" for k, v in c.factors.items()),
             "shared features: " + (", ".join(c.shared_features) or "-"),
             "members: " + ", ".join(c.members), ""]
    linked = [link for link in c.links if link.linked]
    lines.append(f"links ({len(linked)} linked pairs of {len(c.links)} sharing anything; "
                 f"linked at {c.link_threshold:g} points):")
    rows = [(link.a, link.b, link.strength, "yes" if link.linked else "no", "; ".join(link_evidence(link)))
            for link in c.links]
    lines.append(_table(("account", "account", "points", "linked", "features (points per kind, once)"), rows))
    lines.append("score history (stored versions):")
    lines.append(_table(("updated (event time)", "score", "members", "active"),
                        [(_t(h.updated_ts), round(h.score, 1), h.size, "yes" if h.active else "no")
                         for h in c.history]))
    return _section(cluster_title(c), "\n".join(lines))


def cluster_title(c: ClusterInfo) -> str:
    """'Campaign c-…' when the cluster rule would alert on its score, else linked accounts."""
    if c.is_campaign:
        return f"Campaign {c.cluster_id}"
    bar = f", campaign at score {c.campaign_threshold:g}" if c.campaign_threshold is not None else ""
    return f"{LINKED_BELOW[0].upper()}{LINKED_BELOW[1:]} {c.cluster_id} (score {c.score:.1f}{bar})"


def link_evidence(link: Link) -> list[str]:
    """Per shared kind: its features and the points the kind adds (once), e.g. ``ip24:a.b.c, ip24:d.e.f +0.45``."""
    by_kind: dict[str, list[str]] = {}
    for f in link.features:
        by_kind.setdefault(f.kind, []).append(f.feature + (" (popular)" if f.popular else ""))
    return [f"{', '.join(names)} +{link.points.get(kind, 0):g}" for kind, names in by_kind.items()]


def _harvest(h: Harvest) -> str:
    if h.first_alert is None:
        before = "no alert yet (no page): everything was received before any alert"
    else:
        share = h.before_alert / h.total if h.total else 0.0
        before = (f"before the first alert ({_t(h.first_alert)}, the first page): {_n(h.before_alert)} tokens "
                  f"({_n(h.completion_before_alert)} completion + {_n(h.reasoning_before_alert)} reasoning), "
                  f"{share:.0%} of the total")
    return (f"  received: {_n(h.total)} tokens ({_n(h.completion_tokens)} completion + "
            f"{_n(h.reasoning_tokens)} reasoning)\n  {before}\n")


def _page(p: AccountPage) -> str:
    parts = [f"first seen {_t(p.first_seen)}, last seen {_t(p.last_seen)}, {_n(p.calls)} calls"
             + (f", cluster {p.cluster_id}" if p.cluster_id else "") + "\n"]
    parts.append("calls and tokens per day:\n" + _table(
        ("day", "calls", "input", "output", "reasoning"),
        [(d.start.date().isoformat(), d.calls, d.prompt_tokens, d.completion_tokens, d.reasoning_tokens)
         for d in p.days]))
    peak = sorted(p.scores, key=lambda s: -s.max_score)[:10]
    parts.append(f"highest scores (per {p.score_bucket_s // 60} min; every bucket in --json/--html):\n" + _table(
        ("from", "max score", "top signals"), [(_t(s.start), round(s.max_score, 1), ", ".join(s.top_signals))
                                              for s in sorted(peak, key=lambda s: s.start)]))
    parts.append("alerts (fired at = end of the scored minute; only a page not suppressed counts as the first "
                 "alert):\n" + _table(
        ALERT_COLUMNS,
        [(_t(a.fired_ts), _t(a.minute), a.rule, a.severity, round(a.score, 1), a.mode, a.suppressed_by or "-",
          ", ".join(a.signals[:6])) for a in p.alerts]))
    parts.append("harvested output (estimate):\n" + _harvest(p.harvest))
    for kind, title in KIND_TITLES.items():
        rows = [(e.value, e.calls, _t(e.first_seen), _t(e.last_seen)) for e in p.entities if e.kind == kind]
        parts.append(f"{title}:\n" + _table(("value", "calls", "first seen", "last seen"), rows))
    parts.append("prompt templates shared with other accounts (SimHash within the linking distance):\n" + _table(
        ("simhash", "calls", "accounts", "their calls", "bits apart", "some of them"),
        [(s.simhash, s.calls, s.other_account_count, s.other_calls, s.min_distance, ", ".join(s.other_accounts[:5]))
         for s in p.shared_templates]))
    parts.append("models:\n" + _table(
        ("model", "calls", "share", "first call (anyone)", "new", "share since release"),
        [(m.model, m.calls, f"{m.share:.0%}", _t(m.released), "yes" if m.newly_released else "",
          f"{m.share_since_release:.0%}" if m.newly_released else "") for m in p.models]))
    if p.feedback is None:
        parts.append("analyst feedback: (no alert_feedback table in this database)\n")
    else:
        parts.append("analyst feedback:\n" + _table(
            ("recorded", "rule", "verdict", "reason", "analyst"),
            [(_t(f.recorded_at), f.rule or "(all)", f.verdict, f.reason, f.analyst) for f in p.feedback]))
    return _section(f"Account {p.account_id}", "\n".join(parts))

