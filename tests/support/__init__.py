"""Shared test support (importable as ``support`` through pytest's ``pythonpath = ["tests"]``):
paths, hand-built graphs, the registry's consumer list, and test-only Lava replicas."""
