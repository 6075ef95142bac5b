"""Picks the tf.distribute strategy the environment calls for."""
import json
import os
from typing import Optional

import tensorflow as tf


def _num_workers_in_tf_config() -> int:
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def create_strategy(tpu: Optional[str] = None) -> tf.distribute.Strategy:
    """TPU name/address -> TPUStrategy; TF_CONFIG with several workers ->
    MultiWorkerMirroredStrategy; several GPUs -> MirroredStrategy; otherwise
    the default strategy (one device)."""
    if tpu:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if _num_workers_in_tf_config() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()
