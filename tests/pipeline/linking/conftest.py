"""Fixtures of the linking tests."""

from __future__ import annotations

import pytest

from pipeline.linking.config import LinkingConfig, load_linking_config


@pytest.fixture(scope="session")
def config() -> LinkingConfig:
    return load_linking_config()
