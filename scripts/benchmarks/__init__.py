"""Cascade benchmarks: `scripts/bench [--quick] [--only engine,...] [--out PATH]`.

Every figure is a median of several runs and every comparison is a ratio measured in the same
process run (see docs/BENCHMARKS.md for the latest table and `report.py` for how it is built).
"""
