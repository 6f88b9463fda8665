"""Helpers shared by test modules: fixtures' machinery, stand-in servers, real-data loaders."""
