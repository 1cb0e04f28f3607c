"""Benchmarks, outside the default test run: ``python -m tests.benchmarks --help``."""
