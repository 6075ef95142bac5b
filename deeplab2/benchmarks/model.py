"""Benchmark: Panoptic-DeepLab or a top-down model's forward latency against a baseline model.

For each input size, times in the same run (batch 1, inference, graph mode
through `tf.function` without XLA `jit_compile`, after warm-up, the timed
functions alternating so that all see the same machine load) our model and a
baseline: `keras.applications.ResNet50(weights=None,
include_top=False)`, or with `--deeplab2_config` the library's own model of
that config's backbone and output stride (the deeplab2-compatible model is
"ours"). Counts both models' multiply-adds from their graphs
(deeplab2.model.profile) and reports median latency, GMAC/s, the ratio of
time per multiply-add (baseline GMAC/s over ours; <= 1 meets the target) and
the latency ratio (ours / baseline). It also times our network as plain
inference runs it (`ours_network`: Panoptic-DeepLab's heads at stride 4,
without the model's upsampling, which the post-processing does inside) and,
with `--bfloat16`, that network computing in bfloat16 (Keras mixed precision,
the same weights), each with its speed-up over our forward. Peak memory is
the process's ru_maxrss after building and warming up our model, and at the
end.

With `--meta_architecture panoptic_fpn` (or another top-down family,
`upsnet`, `seamless`), each size is padded to multiples of 32 and times the model's
network forward (its inference call: backbone, FPN, proposals, box head,
detections, mask head, semantic head), its post-processing and fusion (mask
pasting, fusion into a panoptic map; UPSNet's pruning and panoptic head) on
the model's real outputs, and the total through a `Predictor`; and, as the
baseline, the total through a `Predictor` of a Panoptic-DeepLab with the same
backbone and label space at the matching k * 32 + 1 size (its post-processing
compiles itself with XLA). Reports median, mean and min ms of each, the
post-processing's share of the total and fraction of the forward (target: at
most 10% of the forward) and the total latency ratio (top-down model /
Panoptic-DeepLab). Random weights score about 1 / (K + 1) per thing class, so
the default detection and fusion score thresholds of 0 make all
`max_detections` detections valid and visited by the fusion: the heaviest
load of the post-processing (a trained model keeps fewer); the run reports
the valid detections and kept instances.

Usage (options only, no program name):
  deeplab2.benchmarks.model.main(["--backbone", "resnet50",
                                  "--input_size", "513", "1025"])
  deeplab2.benchmarks.model.main(["--meta_architecture", "panoptic_fpn",
                                  "--dataset", "coco", "--input_size", "800", "1333"])
"""
import argparse
import json
import resource
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset
from deeplab2.inference import Predictor
from deeplab2.inference.loading import parse_overrides
from deeplab2.model import builder
from deeplab2.model import profile
from deeplab2.model.meta import get_meta_architecture, make_config

DEFAULT_SIZES = ((1025, 2049), (513, 1025))
TOP_DOWN_DEFAULT_SIZES = ((1024, 2048), (800, 1333))
DEFAULT_NUM_CLASSES = 19
# Families timed as top-down models (forward, post-processing, total).
TOP_DOWN_FAMILIES = ("panoptic_fpn", "upsnet", "seamless")
# Top-down architecture options the benchmark sets unless --option does.
TOP_DOWN_LOAD_OPTIONS = {"detection_score_threshold": 0.0}
TARGET_POSTPROCESS_FRACTION_OF_FORWARD = 0.10


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def random_images(input_size):
    """One random [1, H, W, 3] float32 image in [0, 255]."""
    return tf.constant(np.random.default_rng(0).uniform(
        0, 255, (1, *input_size, 3)).astype("float32"))


class Timed:
    """A function run as a `tf.function` (no XLA) on fixed inputs; a call
    returns its latency in ms, the outputs fetched to NumPy."""

    def __init__(self, function, inputs, warmup):
        self.function = tf.function(function)
        self.inputs = inputs
        for _ in range(warmup):
            self()
        self.times_ms = []

    def __call__(self):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), self.function(self.inputs))
        return (time.perf_counter() - start) * 1e3

    def latency(self):
        return {"median_ms": round(statistics.median(self.times_ms), 1),
                "mean_ms": round(statistics.mean(self.times_ms), 1),
                "min_ms": round(min(self.times_ms), 1)}


class TimedForward(Timed):
    """A model's forward pass on one random [1, H, W, 3] image."""

    def __init__(self, model, input_size, warmup):
        self.madds = profile.count_madds(model, (*input_size, 3))
        super().__init__(lambda x: model(x, training=False), random_images(input_size),
                         warmup)

    def summary(self):
        median_ms = statistics.median(self.times_ms)
        return {"median_ms": round(median_ms, 1),
                "min_ms": round(min(self.times_ms), 1),
                "gmacs": round(self.madds / 1e9, 2),
                "gmac_per_s": round(self.madds / 1e9 / (median_ms / 1e3), 1)}


def _network(model):
    """The family's network outputs (Panoptic-DeepLab: its heads at stride 4,
    which plain inference post-processes without the model's upsampling)."""
    family = get_meta_architecture(model.model_config.meta_architecture)
    return lambda images: family.network_outputs(model, images)


def bfloat16_copy(model):
    """`model` computing in bfloat16 (Keras mixed precision), same weights."""
    copy = builder.model_from_config(model.model_config, pretrained=False,
                                     compute_dtype="bfloat16")
    copy.set_weights(model.get_weights())
    return copy


def run(ours_model, baseline_model, baseline_name, input_size, warmup, repeats,
        bfloat16=False):
    """One input size: ours (its forward, and its network as inference runs
    it, in float32 and with `bfloat16` in bfloat16) and the baseline, timed
    alternately."""
    ours = TimedForward(ours_model, input_size, warmup)
    peak_after_ours = _peak_rss_mb()
    baseline = TimedForward(baseline_model, input_size, warmup)
    networks = {"ours_network": Timed(_network(ours_model), random_images(input_size),
                                      warmup)}
    if bfloat16:
        networks["ours_network_bfloat16"] = Timed(
            _network(bfloat16_copy(ours_model)), random_images(input_size), warmup)
    # Alternating runs share the machine's load (other processes) fairly.
    for _ in range(repeats):
        ours.times_ms.append(ours())
        baseline.times_ms.append(baseline())
        for network in networks.values():
            network.times_ms.append(network())
    result = {"input_size": list(input_size), "ours": ours.summary(),
              baseline_name: baseline.summary(),
              "peak_rss_mb_after_ours": round(peak_after_ours)}
    for name, network in networks.items():
        result[name] = network.latency()
        result[f"{name}_speedup_over_forward"] = round(
            result["ours"]["median_ms"] / result[name]["median_ms"], 3)
    result["ours"]["params_m"] = round(
        profile.count_model_params(ours_model) / 1e6, 2)
    result["time_per_madd_ratio"] = round(
        result[baseline_name]["gmac_per_s"] / result["ours"]["gmac_per_s"], 3)
    result["latency_ratio"] = round(
        result["ours"]["median_ms"] / result[baseline_name]["median_ms"], 3)
    return result


def run_top_down(args, requested_size):
    """One requested size: the top-down model's forward, post-processing and
    total, and Panoptic-DeepLab's total at the matching size, timed alternately."""
    fpn = builder.build_model(args.meta_architecture, args.dataset_info,
                              backbone=args.backbone,
                              postprocess={"score_threshold": args.fusion_score_threshold},
                              **args.architecture)
    config = fpn.model_config
    family = get_meta_architecture(args.meta_architecture)
    size = tuple(family.padded_size(side, config) for side in requested_size)
    images = random_images(size)
    forward = Timed(lambda x: fpn(x, training=False), images, args.warmup)
    outputs = dict(forward.function(images))
    postprocess = Timed(lambda raw: family.postprocess(raw, config, config.postprocess),
                        outputs, args.warmup)
    total = Timed(Predictor(fpn).__call__, images, args.warmup)
    predictions = total.function(images)
    peak_after_ours = _peak_rss_mb()

    deeplab = builder.build_model(dataset=args.dataset_info, backbone=args.backbone,
                                  output_stride=args.output_stride)
    deeplab_family = get_meta_architecture("panoptic_deeplab")
    deeplab_size = tuple(deeplab_family.padded_size(side, deeplab.model_config)
                         for side in size)
    baseline = Timed(Predictor(deeplab).__call__, random_images(deeplab_size), args.warmup)
    timed = (forward, postprocess, total, baseline)
    # Alternating runs share the machine's load (other processes) fairly.
    for _ in range(args.repeats):
        for function in timed:
            function.times_ms.append(function())
    forward_ms, postprocess_ms, total_ms, baseline_ms = (
        statistics.median(function.times_ms) for function in timed)
    fraction = postprocess_ms / forward_ms
    return {
        "requested_size": list(requested_size),
        "input_size": list(size),
        args.meta_architecture: {
            "forward": forward.latency(),
            "postprocess": postprocess.latency(),
            "total": total.latency(),
            "params_m": round(profile.count_model_params(fpn) / 1e6, 2),
            "valid_detections": int(np.sum(outputs[common.DETECTION_VALID])),
            "instances_kept": int(np.sum(predictions[common.INSTANCE_CLASSES]
                                         != args.dataset_info.ignore_label)),
        },
        "postprocess_share_of_total": round(postprocess_ms / total_ms, 3),
        "postprocess_fraction_of_forward": round(fraction, 3),
        "meets_target": fraction <= TARGET_POSTPROCESS_FRACTION_OF_FORWARD,
        "baseline": {"meta_architecture": "panoptic_deeplab", "backbone": args.backbone,
                     "output_stride": args.output_stride, "input_size": list(deeplab_size),
                     "total": baseline.latency()},
        "total_latency_ratio": round(total_ms / baseline_ms, 3),
        "peak_rss_mb_after_ours": round(peak_after_ours),
    }


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
    ours = builder.build_model(dataset=args.dataset_info, backbone=args.backbone,
                               output_stride=args.output_stride)
    return ours, keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(*input_size, 3)), "keras_resnet50"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="benchmark.py model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--meta_architecture", default="panoptic_deeplab",
                        choices=("panoptic_deeplab",) + TOP_DOWN_FAMILIES,
                        help="a top-down family: time its forward, post-processing and "
                             "total against a Panoptic-DeepLab's total")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--deeplab2_config",
                        help="time this google-research/deeplab2 config's model (e.g. "
                             "resnet50_os32) against the library's own model with the "
                             "same backbone and output stride, instead of ours against "
                             "keras ResNet50")
    parser.add_argument("--input_size", type=int, nargs=2, action="append",
                        metavar=("H", "W"),
                        help="repeatable; default 1025 2049 and 513 1025 (top-down "
                             "families: 1024 2048 and 800 1333, padded to multiples of 32)")
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--num_classes", type=int,
                         help=f"classes of a placeholder label space (default "
                              f"{DEFAULT_NUM_CLASSES}, the upper half things)")
    classes.add_argument("--dataset", help="a dataset's label space, e.g. coco, cityscapes "
                         "or the path of a .json dataset descriptor")
    parser.add_argument("--output_stride", type=int, default=32,
                        help="of Panoptic-DeepLab (the top-down families' is 32)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="top-down architecture option (repeatable), e.g. "
                             "max_detections=50; default detection_score_threshold=0")
    parser.add_argument("--fusion_score_threshold", type=float,
                        help="top-down post-processing score threshold (default 0)")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time our network computing in bfloat16 (Keras "
                             "mixed precision, the same weights)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    fpn = args.meta_architecture in TOP_DOWN_FAMILIES
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0.")
    if any(side < 1 for size in args.input_size or () for side in size):
        parser.error(f"--input_size sides must be positive, got {args.input_size}.")
    if fpn and args.deeplab2_config:
        parser.error(f"--deeplab2_config times Panoptic-DeepLab models only; drop it or "
                     f"--meta_architecture {args.meta_architecture}.")
    if not fpn and (args.option or args.fusion_score_threshold is not None):
        parser.error(f"--option and --fusion_score_threshold need a top-down "
                     f"--meta_architecture ({', '.join(TOP_DOWN_FAMILIES)}).")
    if args.num_classes is None:
        args.num_classes = DEFAULT_NUM_CLASSES
    try:
        args.dataset_info = (resolve_dataset(args.dataset) if args.dataset else
                             profile.placeholder_dataset(args.num_classes))
        if fpn:
            args.architecture = {**TOP_DOWN_LOAD_OPTIONS, **parse_overrides(args.option)}
            if "backbone" in args.architecture:
                parser.error("set the backbone with --backbone, not --option.")
            if args.fusion_score_threshold is None:
                args.fusion_score_threshold = 0.0
            # Validates the options, backbone and label space before any timing.
            make_config(args.meta_architecture, args.dataset_info, output_stride=32,
                        crop_size=None, pixel_mean=builder.DEFAULT_PIXEL_MEAN,
                        pixel_std=builder.DEFAULT_PIXEL_STD,
                        architecture=dict(args.architecture, backbone=args.backbone),
                        postprocess={"score_threshold": args.fusion_score_threshold})
    except (UnknownDatasetError, ValueError) as error:
        parser.error(error.args[0] if error.args else str(error))
    return args


def _main_top_down(args):
    report = {
        "meta_architecture": args.meta_architecture,
        "backbone": args.backbone,
        "dataset": args.dataset_info.name,
        "architecture_options": args.architecture,
        "fusion_score_threshold": args.fusion_score_threshold,
        "jit_compile": False,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "intra_op_threads":
            tf.config.threading.get_intra_op_parallelism_threads(),
        "target_postprocess_fraction_of_forward": TARGET_POSTPROCESS_FRACTION_OF_FORWARD,
        "runs": [],
    }
    for size in args.input_size or TOP_DOWN_DEFAULT_SIZES:
        report["runs"].append(run_top_down(args, tuple(size)))
        keras.backend.clear_session()
    report["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(report, indent=2))
    return 0


def main(argv):
    args = parse_args(argv)
    if args.meta_architecture in TOP_DOWN_FAMILIES:
        return _main_top_down(args)
    sizes = args.input_size or DEFAULT_SIZES
    classes = ({"dataset": args.dataset} if args.dataset else
               {"num_classes": args.num_classes})
    model = ({"deeplab2_config": args.deeplab2_config} if args.deeplab2_config else
             {"backbone": args.backbone, "output_stride": args.output_stride, **classes})
    report = {
        **model,
        "intra_op_threads":
            tf.config.threading.get_intra_op_parallelism_threads(),
        "runs": [],
    }
    for size in sizes:
        ours, baseline, name = _models(args, tuple(size))
        report["runs"].append(run(ours, baseline, name, tuple(size), args.warmup,
                                  args.repeats, args.bfloat16))
        keras.backend.clear_session()
    report["peak_rss_mb"] = round(_peak_rss_mb())
    print(json.dumps(report, indent=2))
    return 0
