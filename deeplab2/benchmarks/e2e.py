"""Benchmark: end-to-end latency of the exported SavedModel, uint8 image in -> panoptic out.

For each backbone, builds a random-weight Panoptic-DeepLab for a dataset's
classes with the given post-processing options, exports it (deeplab2.export)
to a temporary folder, reloads it with
`tf.saved_model.load` and times the serving function on a random image of the
given size (padding, model, test-time augmentation, XLA post-processing and
cropping). Prints one JSON object with, per backbone, the export and load
seconds, the first call (tracing and XLA compilation for the size), and the
median and min latency and median process CPU time (all threads) in ms.

In the same run, after the exported model, it times the network
alone (`MetaArchitecture.network_outputs` on the padded image, what a
network file computes) and, as the baseline, the path that upsamples the
outputs to full resolution before post-processing (the model's call, softmax
probabilities, `postprocess`): `outside_network_fraction` is the share of the
exported model's latency spent outside the network (padding, upsampling,
post-processing, cropping; target at most 5% at 1025x2049).

Usage (options only, no program name):
  deeplab2.benchmarks.e2e.main(["--backbone", "resnet50", "--size", "513", "1025"])
"""
import argparse
import json
import statistics
import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.export import export_saved_model
from deeplab2.inference import Predictor
from deeplab2.model import build_model
from deeplab2.benchmarks.model import bfloat16_copy
from deeplab2.model.builder import COMPUTE_DTYPES


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py e2e",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", nargs="+", default=["mobilenet_v3_small", "resnet50"])
    parser.add_argument("--size", type=int, nargs=2, default=(513, 1025),
                        metavar=("HEIGHT", "WIDTH"), help="input image size (any)")
    parser.add_argument("--dataset", default="cityscapes")
    parser.add_argument("--output_stride", type=int, default=32)
    parser.add_argument("--nms_kernel", type=int, default=13)
    parser.add_argument("--center_threshold", type=float, default=0.1,
                        help="lower it to load the post-processing of random weights")
    parser.add_argument("--keep_k", type=int, default=200)
    parser.add_argument("--compute_dtype", default="float32", choices=list(COMPUTE_DTYPES),
                        help="the network's arithmetic (bfloat16: Keras mixed precision)")
    parser.add_argument("--xla", action="store_true",
                        help="compile the whole serving function with XLA")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def run_backbone(backbone: str, image: np.ndarray, args: argparse.Namespace) -> Dict:
    """Exports, reloads and times one backbone; returns its JSON-ready results."""
    model = build_model(dataset=args.dataset, backbone=backbone,
                        output_stride=args.output_stride,
                        postprocess=dict(center_threshold=args.center_threshold,
                                         nms_kernel=args.nms_kernel,
                                         keep_k_centers=args.keep_k))
    if args.compute_dtype == "bfloat16":
        model = bfloat16_copy(model)
    info = model.model_config.dataset
    predictor = Predictor(model)
    with tempfile.TemporaryDirectory() as export_dir:
        start = time.perf_counter()
        export_saved_model(predictor, export_dir, jit_compile=args.xla)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        loaded = tf.saved_model.load(export_dir)
        load_s = time.perf_counter() - start
    start = time.perf_counter()
    outputs = loaded.serve(image)
    first_call_s = time.perf_counter() - start
    images, _ = predictor.prepare_image(image)
    network = tf.function(lambda x: predictor.network(x))
    full_resolution = tf.function(lambda x: predictor.family.postprocess(
        predictor.raw_predictions(x), predictor.config, predictor.config.postprocess))
    runs = {"exported": lambda: loaded.serve(image)[common.PANOPTIC],
            "network": lambda: network(images)[common.SEMANTIC_LOGITS],
            "full_resolution": lambda: full_resolution(images)[common.PANOPTIC]}
    # Each in its own block: alternating calls of different functions made
    # the threads one leaves spinning slow the next (up to 2x on 2 cores).
    times = {name: [] for name in runs}
    cpu_times = []
    for name, run in runs.items():
        for _ in range(args.warmup):
            run().numpy()
        for _ in range(args.repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            run().numpy()
            times[name].append((time.perf_counter() - start) * 1e3)
            if name == "exported":
                cpu_times.append((time.process_time() - cpu_start) * 1e3)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "params_m": round(model.count_params() / 1e6, 2),
        "instances": int((outputs[common.INSTANCE_CLASSES].numpy() != info.ignore_label).sum()),
        "export_s": round(export_s, 1),
        "load_s": round(load_s, 1),
        "first_call_s": round(first_call_s, 1),
        "median_ms": round(median["exported"], 1),
        "min_ms": round(min(times["exported"]), 1),
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "network_median_ms": round(median["network"], 1),
        "outside_network_fraction": round(1 - median["network"] / median["exported"], 3),
        "full_resolution_baseline_median_ms": round(median["full_resolution"], 1),
        "full_resolution_baseline_outside_network_fraction": round(
            1 - median["network"] / median["full_resolution"], 3),
    }


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Times every backbone; returns the JSON-ready results."""
    height, width = args.size
    image = tf.constant(np.random.default_rng(args.seed).integers(
        0, 256, (height, width, 3), dtype=np.uint8))
    return {
        "benchmark": "e2e",
        "input": [height, width, 3],
        "dataset": args.dataset,
        "output_stride": args.output_stride,
        "center_threshold": args.center_threshold,
        "nms_kernel": args.nms_kernel,
        "keep_k": args.keep_k,
        "xla": args.xla,
        "compute_dtype": args.compute_dtype,
        "repeats": args.repeats,
        "backbones": {name: run_backbone(name, image, args) for name in args.backbone},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
