"""Grafana as code: the four dashboards, their provisioning files, and ``distillwatch grafana build|deploy``."""
