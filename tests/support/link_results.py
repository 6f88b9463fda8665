"""Cluster rows and cluster alerts as the linking process reports them: n of each, distinct by index."""

from __future__ import annotations

from pipeline.alerting.alert_rows import AlertRows
from pipeline.linking.cluster_outputs import ClusterRows


def rows(n: int) -> ClusterRows:
    out = ClusterRows()
    for i in range(n):
        out.cluster_id.append(f"c{i}")
        out.account_ids.append([f"acct-{i}-{j}" for j in range(20)])
        out.size.append(20)
        out.score.append(71.5)
        out.shared_features.append(["pay:pf_A", "tpl:0123"])
        out.factor_names.append(["size", "mean"])
        out.factor_points.append([10.0, 2.5])
        out.first_seen_ts.append(1_000 + i)
        out.updated_ts.append(2_000 + i)
        out.active.append(i % 2)
        out.version.append(1_770_000_000_000_000 + i)
        out.merged_into.append("")
    return out


def alerts(n: int) -> AlertRows:
    out = AlertRows()
    for i in range(n):
        out.add(alert_id=f"a{i}", fired_ms=5_000 + i, account_id=f"acct-{i}", rule="cluster_extraction",
                severity="high", score=71.5, signals=["size", "pay:pf_A"], points=[10.0, 3.0],
                window_start_s=60 * i, cluster_id="c0", mode="page", action="throttle", suppressed_by="")
    return out
