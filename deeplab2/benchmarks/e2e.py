"""Benchmark: end-to-end latency of the exported SavedModel, uint8 image in -> panoptic out.

For each backbone, builds a random-weight Panoptic-DeepLab for a dataset's
classes with the given post-processing options, exports it (deeplab2.export)
to a temporary folder, reloads it with
`tf.saved_model.load` and times the serving function on a random image of the
given size (padding, model, test-time augmentation, XLA post-processing and
cropping). Prints one JSON object with, per backbone, the export and load
seconds, the first call (tracing and XLA compilation for the size), and the
median and min latency and median process CPU time (all threads) in ms.

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
    for _ in range(args.warmup):
        loaded.serve(image)[common.PANOPTIC].numpy()
    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        loaded.serve(image)[common.PANOPTIC].numpy()
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
    return {
        "params_m": round(model.count_params() / 1e6, 2),
        "instances": int((outputs[common.INSTANCE_CLASSES].numpy() != info.ignore_label).sum()),
        "export_s": round(export_s, 1),
        "load_s": round(load_s, 1),
        "first_call_s": round(first_call_s, 1),
        "median_ms": round(statistics.median(times), 1),
        "min_ms": round(min(times), 1),
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
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
        "repeats": args.repeats,
        "backbones": {name: run_backbone(name, image, args) for name in args.backbone},
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
