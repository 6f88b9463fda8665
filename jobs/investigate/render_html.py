"""The ``investigate --html`` page: one self-contained file to attach to a ticket (jobs/html_page.py)."""

from __future__ import annotations

from datetime import datetime

from jobs.html_page import Html, esc, figure_png, key_values, page, section, table, tags
from jobs.investigate import plots
from jobs.investigate.render_text import ALERT_COLUMNS, KIND_TITLES, cluster_title, link_evidence
from jobs.investigate.result import AccountPage, ClusterInfo, Harvest, Investigation

_TIME = "%Y-%m-%d %H:%M:%S"
MAX_SCORE_ROWS = 120  # score buckets listed; the plot shows all


def _t(value: datetime | None) -> str:
    return value.strftime(_TIME) if value else ""


def render(inv: Investigation) -> str:
    sections: list[tuple[str, str, str]] = [("summary", "Summary", _summary(inv))]
    if inv.cluster:
        sections.append(("campaign", cluster_title(inv.cluster), _cluster(inv, inv.cluster)))
    for i, p in enumerate(inv.pages):
        sections.append((f"account-{i}", p.account_id, _account(p, f"account-{i}")))
    what = "account"
    if inv.target_kind == "cluster":
        what = "campaign" if inv.cluster and inv.cluster.is_campaign else "linked accounts"
    subtitle = (f"{what} {inv.target} · database {inv.database} · "
                f"{'since ' + _t(inv.since) if inv.since else 'all data'} · generated {_t(inv.generated_at)} UTC")
    return page(f"Investigation: {inv.target}", sections, subtitle=subtitle,
                footer="distillwatch investigate — figures from the rollup tables; see docs/forensics.md")


def _harvest_pairs(h: Harvest) -> list[tuple[str, object]]:
    share = f"{h.before_alert / h.total:.0%}" if h.total and h.first_alert else ""
    return [("output received (tokens)", h.total), ("completion tokens", h.completion_tokens),
            ("reasoning tokens", h.reasoning_tokens),
            ("first alert (first page, not suppressed)", _t(h.first_alert) or "none"),
            ("received before the first alert", h.before_alert if h.first_alert else "all of it (no alert)"),
            ("share before the first alert", share)]


def _summary(inv: Investigation) -> Html:
    firsts = [p.first_seen for p in inv.pages if p.first_seen]
    lasts = [p.last_seen for p in inv.pages if p.last_seen]
    pairs: list[tuple[str, object]] = [
        ("accounts", len(inv.pages)), ("first seen", _t(min(firsts)) if firsts else ""),
        ("last seen", _t(max(lasts)) if lasts else ""), ("calls", sum(p.calls for p in inv.pages)),
        ("alerts", sum(len(p.alerts) for p in inv.pages)), *_harvest_pairs(inv.harvest),
    ]
    if inv.new_models:
        pairs.append(("newly released models", ", ".join(f"{m} ({_t(t)})" for m, t in inv.new_models.items())))
    note = ("Harvested output is an estimate: the completion and reasoning tokens the account(s) received; "
            "before the first alert = calls before the first page that was not suppressed (monitor-mode and "
            "suppressed alerts paged nobody; for a campaign, its first member's page).")
    return section("Summary", key_values(pairs), anchor="summary", note=note)


def _cluster(inv: Investigation, c: ClusterInfo) -> Html:
    parts = [key_values([("state", "active" if c.active else "retired"), ("score", c.score),
                         ("members", len(c.members)), ("first linked", _t(c.first_seen)),
                         ("evidence up to", _t(c.updated))])]
    parts.append(Html("<h3>Score factors</h3>"))
    parts.append(table(("factor", "points"), list(c.factors.items()), numeric=(1,)))
    parts.append(Html(f"<h3>Shared features</h3><p>{tags(c.shared_features)}</p>"))
    parts.append(Html("<h3>Members</h3>"))
    rows = [(p.account_id, p.calls, len(p.alerts), _t(p.harvest.first_alert), p.harvest.total, p.harvest.before_alert)
            for p in inv.pages]
    parts.append(table(("account", "calls", "alerts", "first alert", "output tokens", "before first alert"), rows,
                       numeric=(1, 2, 4, 5), mono=(0,)))
    if len(inv.pages) > 1:
        parts.append(figure_png(plots.member_harvest(inv), alt="harvested output per member",
                                caption="Output tokens per member: red before the member's first alert."))
    parts.append(Html(f"<h3>Links</h3><p class=\"note\">A pair is linked at {c.link_threshold:g} points: each shared "
                      "kind counts once with its weight (pay 1.0, ip 0.45, tpl 0.55, asn 0.15, ua 0.15 in the default "
                      "linking file); popular values (more accounts than the kind's cap) count nothing.</p>"))
    link_rows = [(link.a, link.b, link.strength, link.linked,
                  tags(link_evidence(link))) for link in c.links]
    parts.append(table(("account", "account", "points", "linked", "shared features"), link_rows, numeric=(2,),
                       mono=(0, 1), wrap=(4,)))
    parts.append(Html("<h3>Score history</h3>"))
    if c.history:
        parts.append(figure_png(plots.cluster_history(c), alt="cluster score history",
                                caption="Stored versions of the clusters row (a merge keeps only the newest)."))
    parts.append(table(("version", "evidence up to", "score", "members", "active"),
                       [(h.version, _t(h.updated_ts), h.score, h.size, h.active) for h in c.history],
                       numeric=(2, 3)))
    return section(cluster_title(c), Html("".join(parts)), anchor="campaign")


def _account(p: AccountPage, anchor: str) -> Html:
    parts = [key_values([("first seen", _t(p.first_seen)), ("last seen", _t(p.last_seen)), ("calls", p.calls),
                         ("cluster", p.cluster_id or "none")])]
    parts.append(figure_png(plots.account_activity(p), alt=f"score and output of {p.account_id}",
                            caption=f"Max score per {p.score_bucket_s // 60} min, alert minutes (dashed red), "
                                    "output tokens per hour (bars)."))
    parts.append(Html("<h3>Harvested output (estimate)</h3>"))
    parts.append(key_values(_harvest_pairs(p.harvest)))
    parts.append(Html("<h3>Calls and tokens per day</h3>"))
    parts.append(table(("day", "calls", "input tokens", "output tokens", "reasoning tokens"),
                       [(d.start.date(), d.calls, d.prompt_tokens, d.completion_tokens, d.reasoning_tokens)
                        for d in p.days], numeric=(1, 2, 3, 4)))
    parts.append(Html("<h3>Alerts</h3><p class=\"note\">Fired at = the end of the scored minute. Only a page "
                      "that was not suppressed counts as the first alert.</p>"))
    parts.append(table(ALERT_COLUMNS,
                       [(_t(a.fired_ts), _t(a.minute), a.rule, a.severity, a.score, a.mode, a.suppressed_by,
                         tags(a.signals)) for a in p.alerts],
                       numeric=(4,), wrap=(7,)))
    scored = [s for s in p.scores if s.max_score > 0]
    shown = sorted(sorted(scored, key=lambda s: -s.max_score)[:MAX_SCORE_ROWS], key=lambda s: s.start)
    cut = f" (the {MAX_SCORE_ROWS} highest of {len(scored)}; all in --json)" if len(scored) > MAX_SCORE_ROWS else ""
    parts.append(Html(f"<h3>Score and top signals over time{esc(cut)}</h3>"))
    parts.append(table(("from", "max score", "top signals"),
                       [(_t(s.start), s.max_score, tags(s.top_signals)) for s in shown],
                       numeric=(1,), empty="no score above 0"))
    for kind, title in KIND_TITLES.items():
        rows = [(e.value, e.calls, _t(e.first_seen), _t(e.last_seen)) for e in p.entities if e.kind == kind]
        parts.append(Html(f"<h3>{esc(title[0].upper() + title[1:])}</h3>"))
        parts.append(table(("value", "calls", "first seen", "last seen"), rows, numeric=(1,), mono=(0,), wrap=(0,)))
    parts.append(Html("<h3>Prompt templates shared with other accounts</h3>"))
    parts.append(table(("simhash", "calls", "other accounts", "their calls", "bits apart", "some of them"),
                       [(s.simhash, s.calls, s.other_account_count, s.other_calls, s.min_distance,
                         ", ".join(s.other_accounts)) for s in p.shared_templates],
                       numeric=(1, 2, 3, 4), mono=(0,)))
    parts.append(Html("<h3>Models</h3>"))
    parts.append(table(("model", "calls", "share", "first call (anyone)", "newly released", "share since release"),
                       [(m.model, m.calls, f"{m.share:.0%}", _t(m.released), m.newly_released,
                         f"{m.share_since_release:.0%}" if m.newly_released else "") for m in p.models],
                       numeric=(1, 2, 5)))
    parts.append(Html("<h3>Analyst feedback</h3>"))
    if p.feedback is None:
        parts.append(Html('<p class="empty">no alert_feedback table in this database</p>'))
    else:
        parts.append(table(("recorded", "rule", "verdict", "reason", "analyst"),
                           [(_t(f.recorded_at), f.rule or "(all rules)", f.verdict, f.reason, f.analyst)
                            for f in p.feedback]))
    return section(f"Account {p.account_id}", Html("".join(parts)), anchor=anchor)
