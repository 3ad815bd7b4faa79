"""Godwit benchmarks: ``python -m bench.run [--quick]`` (``make bench``).

Each measurement runs Godwit and its floor in the same run and prints them
side by side; see docs/benchmarks.md for what each number means.
"""
