"""Benchmarks run on demand (``make bench``); each writes its table into docs/benchmarks.md."""
