"""Benchmarks: long measurements that write JSON records and tables under ``results/``."""
