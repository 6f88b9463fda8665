"""Outputs of the pipeline: ClickHouse tables and the dead-letter topic."""
