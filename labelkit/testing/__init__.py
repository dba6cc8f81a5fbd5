"""Helpers shared by the tests and the benchmarks: photo and bad-input factories
(:mod:`labelkit.testing.photos`) and running real workers (:mod:`labelkit.testing.workers`).

The product never imports this package; the import-direction check keeps it so.
"""
