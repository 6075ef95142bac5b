"""Benchmark: Panoptic-DeepLab forward latency against a baseline model.

For each input size, times in the same run (batch 1, inference, graph mode,
after warm-up, the two models alternating so that both see the same machine
load) our model and a baseline: `keras.applications.ResNet50(weights=None,
include_top=False)`, or with `--deeplab2_config` the library's own model of
that config's backbone and output stride (the deeplab2-compatible model is
"ours"). Counts both models' multiply-adds from their graphs
(deeplab2.model.profile) and reports median latency, GMAC/s, the ratio of
time per multiply-add (baseline GMAC/s over ours; <= 1 meets the target) and
the latency ratio (ours / baseline). Peak memory is
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


def run(ours_model, baseline_model, baseline_name, input_size, warmup, repeats):
    """One input size: ours and the baseline, timed alternately."""
    ours = TimedForward(ours_model, input_size, warmup)
    peak_after_ours = _peak_rss_mb()
    baseline = TimedForward(baseline_model, input_size, warmup)
    # Alternating runs share the machine's load (other processes) fairly.
    for _ in range(repeats):
        ours.times_ms.append(ours())
        baseline.times_ms.append(baseline())
    result = {"input_size": list(input_size), "ours": ours.summary(),
              baseline_name: baseline.summary(),
              "peak_rss_mb_after_ours": round(peak_after_ours)}
    result["ours"]["params_m"] = round(
        profile.count_params(ours_model, trainable_only=True) / 1e6, 2)
    result["time_per_madd_ratio"] = round(
        result[baseline_name]["gmac_per_s"] / result["ours"]["gmac_per_s"], 3)
    result["latency_ratio"] = round(
        result["ours"]["median_ms"] / result[baseline_name]["median_ms"], 3)
    return result


def _models(args, input_size):
    """(ours, baseline, baseline name) for one input size."""
    if args.deeplab2_config:
        from deeplab2.training import config

        options = config.model_options(config.deeplab2_config_file(args.deeplab2_config))
        ours = builder.build_model(**options)
        own = builder.build_model(dataset=options["dataset"], backbone=options["backbone"],
                                  output_stride=options["output_stride"],
                                  crop_size=options["crop_size"])
        return ours, own, "library_" + options["backbone"]
    ours = builder.build_model(dataset=profile.placeholder_dataset(args.num_classes),
                               backbone=args.backbone, output_stride=args.output_stride)
    return ours, keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(*input_size, 3)), "keras_resnet50"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmark.py model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--deeplab2_config",
                        help="time this google-research/deeplab2 config's model (e.g. "
                             "resnet50_os32) against the library's own model with the "
                             "same backbone and output stride, instead of ours against "
                             "keras ResNet50")
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
    model = ({"deeplab2_config": args.deeplab2_config} if args.deeplab2_config else
             {"backbone": args.backbone, "output_stride": args.output_stride,
              "num_classes": args.num_classes})
    report = {
        **model,
        "intra_op_threads":
            tf.config.threading.get_intra_op_parallelism_threads(),
        "runs": [],
    }
    for size in sizes:
        ours, baseline, name = _models(args, tuple(size))
        report["runs"].append(run(ours, baseline, name, tuple(size), args.warmup,
                                  args.repeats))
        keras.backend.clear_session()
    report["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(report, indent=2))
    return 0
