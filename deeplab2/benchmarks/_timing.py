"""Latency of a TensorFlow function, shared by the benchmarks (a private
module: scripts/benchmark.py lists only the public ones as benchmarks)."""
import statistics
import time

import tensorflow as tf


def median_ms(function, inputs=(), *, warmup: int = 0, repeats: int) -> float:
    """Median ms of `function(*inputs)`, its outputs (any nest of tensors)
    fetched to NumPy, after `warmup` + 1 untimed calls (the first traces)."""
    def call():
        tf.nest.map_structure(lambda tensor: tensor.numpy(), function(*inputs))

    for _ in range(warmup + 1):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
