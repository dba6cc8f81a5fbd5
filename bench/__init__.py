"""Benchmarks, run on demand (``make bench``); results go into README.md."""
