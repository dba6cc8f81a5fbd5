"""Benchmarks, run on demand (``make bench``); results go into docs/benchmarks.md (bench/docs_page.py)."""
