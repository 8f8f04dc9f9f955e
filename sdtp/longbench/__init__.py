"""LongBench v1 support that needs no model: the task table, prompt building, the official metrics, data loading.

Everything here reproduces the official THUDM/LongBench v1 harness (`pred.py`, `eval.py`, `metrics.py`) so that our
numbers can be compared with published LongBench tables.
"""
