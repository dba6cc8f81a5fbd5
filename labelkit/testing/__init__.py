"""Helpers shared by the tests and the benchmarks: photo and bad-input factories
(:mod:`labelkit.testing.photos`), running real workers (:mod:`labelkit.testing.workers`) and
clocks a test moves by hand (:mod:`labelkit.testing.clock`).

The product never imports this package; the import-direction check keeps it so.
"""
