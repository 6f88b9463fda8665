"""The Grafana dashboards' identities: uids, titles, URL paths and variable names.

Declared here, in the pipeline, because alert annotations link to them (``alerting.engine``)
as well as the dashboards built from code (``jobs/grafana``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class DashboardId:
    uid: str
    title: str

    @property
    def slug(self) -> str:
        """Grafana's URL slug of the title ("Account drill-down" -> "account-drill-down")."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")

    @property
    def path(self) -> str:
        return f"/d/{self.uid}/{self.slug}"


OVERVIEW = DashboardId("dw-overview", "Extraction overview")
ACCOUNT = DashboardId("dw-account", "Account drill-down")
CAMPAIGNS = DashboardId("dw-campaigns", "Campaigns")
PIPELINE = DashboardId("dw-pipeline", "Pipeline health")

# Template variables the links fill; the dashboards declare them under these names.
ACCOUNT_VAR = "account"
CLUSTER_VAR = "cluster"


def account_page(grafana_url: str, account_id: str) -> str:
    """URL of one account's drill-down on the Grafana at ``grafana_url``."""
    return f"{grafana_url}{ACCOUNT.path}?var-{ACCOUNT_VAR}={quote(account_id, safe='')}"


def campaign_page(grafana_url: str, cluster_id: str) -> str:
    """URL of one campaign on the Grafana at ``grafana_url``."""
    return f"{grafana_url}{CAMPAIGNS.path}?var-{CLUSTER_VAR}={quote(cluster_id, safe='')}"
