"""Dashboard identities and the links between them (one place for uids and URLs)."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DynamicConfigValue

from pipeline.dashboards import (  # noqa: F401 - re-exported for the dashboard modules
    ACCOUNT,
    ACCOUNT_VAR,
    CAMPAIGNS,
    CLUSTER_VAR,
    OVERVIEW,
    PIPELINE,
    DashboardId,
)

TAG = "distillwatch"

# ${__url_time_range} carries the current from/to, so a drill-down keeps the time range.
_KEEP_TIME = "${__url_time_range}"


def account_url() -> str:
    """Data-link URL of the clicked cell's account in the drill-down."""
    return f"{ACCOUNT.path}?var-{ACCOUNT_VAR}=${{__value.raw}}&{_KEEP_TIME}"


def cluster_url() -> str:
    """Data-link URL of the clicked cell's cluster in the campaigns dashboard."""
    return f"{CAMPAIGNS.path}?var-{CLUSTER_VAR}=${{__value.raw}}&{_KEEP_TIME}"


def account_link() -> list[DynamicConfigValue]:
    """Override properties that make a column of account ids link to the drill-down."""
    return [DynamicConfigValue(id_val="links", value=[{"title": "Account drill-down", "url": account_url()}])]


def cluster_link() -> list[DynamicConfigValue]:
    """Override properties that make a column of cluster ids link to the campaign."""
    return [DynamicConfigValue(id_val="links", value=[{"title": "Campaign", "url": cluster_url()}])]
