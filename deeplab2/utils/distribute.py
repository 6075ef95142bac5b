"""Who this process is in a tf.distribute cluster, and exchanging bytes between workers.

Training and evaluation run the same code on every worker; only the chief
writes files (metrics, pictures, summaries, configs), and evaluation merges
every worker's per-image records on every worker through `all_gather_bytes`.
"""
from typing import List

import numpy as np
import tensorflow as tf


def _resolver(strategy: tf.distribute.Strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    return resolver


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Worker processes taking part in `strategy` (1 without a cluster)."""
    resolver = _resolver(strategy)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec().as_dict()
    return len(spec.get("worker", [])) + len(spec.get("chief", []))


def worker_id(strategy: tf.distribute.Strategy) -> int:
    """Index of this worker in its task type (0 without a cluster)."""
    resolver = _resolver(strategy)
    return 0 if resolver is None else int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes files: the chief task, or worker 0
    of a cluster without a chief, or the only process."""
    resolver = _resolver(strategy)
    if resolver is None:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


def all_gather_bytes(strategy: tf.distribute.Strategy, payload: bytes) -> List[bytes]:
    """Every worker's `payload`, in replica order, on every worker.

    A collective: every worker must call it, in the same order as the other
    collectives. Bytes travel as int32 words (accelerators take no uint8 or
    strings) in two all-gathers: the lengths, then the padded payloads.
    """
    if num_workers(strategy) <= 1:
        return [payload]
    local_calls = []

    def local_value(value, empty):
        def value_fn(context):
            del context  # the first local replica carries this worker's payload
            local_calls.append(None)
            return value if len(local_calls) == 1 else empty
        local_calls.clear()
        return strategy.experimental_distribute_values_from_function(value_fn)

    lengths = strategy.gather(local_value(tf.constant([len(payload)], tf.int32),
                                          tf.constant([-1], tf.int32)), axis=0).numpy()
    words = max(1, -(-int(lengths.max()) // 4))
    padded = np.zeros(words * 4, np.uint8)
    padded[:len(payload)] = np.frombuffer(payload, np.uint8)
    rows = strategy.gather(local_value(tf.constant(padded.view(np.int32)[None]),
                                       tf.zeros([1, words], tf.int32)), axis=0).numpy()
    return [rows[i].view(np.uint8)[:length].tobytes()
            for i, length in enumerate(lengths) if length >= 0]
