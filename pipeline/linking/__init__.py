"""Cross-account linking: accounts sharing cards, networks, agents or prompt templates form scored clusters.

Data flow (the modules, in order): observations (one decoded batch → distinct
(feature, account) sightings) → publish (detect side, to dw-link-observations) →
membership + stages.FeatureStage (stage A: feature → bounded account set → edges)
→ clusters + stages.ClusterStage (stage B: pair evidence → union-find clusters →
scores) → alert_time, cluster_outputs (rows and cluster_extraction alerts) → sink.
agents registers both stages on a Faust app; config loads linking.v1.json.
"""
