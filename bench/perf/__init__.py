"""``bench perf``: the study's published training loop against the suite's runner, side by side.

:mod:`bench.perf.study` is the study's loop written out; :mod:`bench.perf.measure` times it,
the runner and a bare loop, and builds the result record.
"""
