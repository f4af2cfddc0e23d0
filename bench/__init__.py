"""Benchmarks: `make bench` (python -m bench.run). Figures, not timed tests."""
