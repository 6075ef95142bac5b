"""Benchmarks run by scripts/benchmark.py: each module has `main(argv)`."""
