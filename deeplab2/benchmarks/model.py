"""Benchmark: Panoptic-DeepLab forward latency against keras ResNet50.

For each input size, times in the same run (batch 1, inference, graph mode,
after warm-up, the two models alternating so that both see the same machine
load) our model and `keras.applications.ResNet50(weights=None,
include_top=False)`, counts both models' multiply-adds from their graphs
(deeplab2.model.profile) and reports median latency, GMAC/s and the ratio of
time per multiply-add (ours / keras; <= 1 meets the target). Peak memory is
the process's ru_maxrss after building and warming up our model, and at the
end.

Usage (options only, no program name):
  deeplab2.benchmarks.model.main(["--backbone", "resnet50",
                                  "--input_size", "513", "1025"])
"""
import argparse
import json
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from deeplab2.model import builder
from deeplab2.model import profile

DEFAULT_SIZES = ((1025, 2049), (513, 1025))


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class TimedForward:
    """A model's compiled forward pass on one random [1, H, W, 3] image."""

    def __init__(self, model, input_size, warmup):
        self.madds = profile.count_madds(model, (*input_size, 3))
        self._images = tf.constant(np.random.default_rng(0).uniform(
            0, 255, (1, *input_size, 3)).astype("float32"))
        self._forward = tf.function(lambda x: model(x, training=False))
        for _ in range(warmup):
            self()
        self.times_ms = []

    def __call__(self):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(),
                              self._forward(self._images))
        return (time.perf_counter() - start) * 1e3

    def summary(self):
        median_ms = statistics.median(self.times_ms)
        return {"median_ms": round(median_ms, 1),
                "min_ms": round(min(self.times_ms), 1),
                "gmacs": round(self.madds / 1e9, 2),
                "gmac_per_s": round(self.madds / 1e9 / (median_ms / 1e3), 1)}


def run(backbone, input_size, num_classes, output_stride, warmup, repeats):
    """One input size: ours and keras ResNet50, timed alternately."""
    ours_model = builder.build_model(backbone=backbone,
                                     num_classes=num_classes,
                                     output_stride=output_stride)
    ours = TimedForward(ours_model, input_size, warmup)
    peak_after_ours = _peak_rss_mb()
    baseline = TimedForward(keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(*input_size, 3)),
        input_size, warmup)
    # Alternating runs share the machine's load (other processes) fairly.
    for _ in range(repeats):
        ours.times_ms.append(ours())
        baseline.times_ms.append(baseline())
    result = {"input_size": list(input_size), "ours": ours.summary(),
              "keras_resnet50": baseline.summary(),
              "peak_rss_mb_after_ours": round(peak_after_ours)}
    result["ours"]["params_m"] = round(
        profile.count_params(ours_model, trainable_only=True) / 1e6, 2)
    result["time_per_madd_ratio"] = round(
        result["keras_resnet50"]["gmac_per_s"]
        / result["ours"]["gmac_per_s"], 3)
    keras.backend.clear_session()
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--input_size", type=int, nargs=2, action="append",
                        metavar=("H", "W"),
                        help="repeatable; default 1025 2049 and 513 1025")
    parser.add_argument("--num_classes", type=int, default=19)
    parser.add_argument("--output_stride", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    sizes = args.input_size or DEFAULT_SIZES
    report = {
        "backbone": args.backbone, "output_stride": args.output_stride,
        "num_classes": args.num_classes,
        "intra_op_threads":
            tf.config.threading.get_intra_op_parallelism_threads(),
        "runs": [run(args.backbone, tuple(size), args.num_classes,
                     args.output_stride, args.warmup, args.repeats)
                 for size in sizes],
    }
    report["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(report, indent=2))
    return 0
