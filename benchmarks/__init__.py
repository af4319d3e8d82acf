"""Speed and accuracy benchmarks of sdesolve, run as ``python -m benchmarks [--quick] [--out results.json]``.

Timings are reported side by side from one run, as ratios; nothing here is asserted in tests.
"""
