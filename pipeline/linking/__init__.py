"""Cross-account linking: accounts sharing cards, networks, agents or prompt templates form scored clusters.

Data flow (the modules, in order): observations (one decoded batch → distinct
(feature, account) sightings) → publish (detect side, to dw-link-observations) →
membership + stages.FeatureStage (stage A: feature → bounded account set)
→ link_state + clusters + stages.ClusterStage (stage B: links derived from the
memberships → union-find clusters → scores) → alert_time, cluster_outputs (rows and cluster_extraction alerts) → results
(to dw-link-results) → results_consumer (in the worker) → sink. process runs both
stages in a process of its own (checkpoint: its state; topics: the topic names);
config loads linking.v1.json.
"""
