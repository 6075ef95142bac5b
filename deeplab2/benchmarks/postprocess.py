"""Benchmark: Panoptic-DeepLab post-processing latency on a realistic random input.

Builds model-like outputs for a street scene: smooth semantic logits with stuff
bands and planted thing instances (ellipses of the Cityscapes thing classes),
a center heatmap of sigma-8 Gaussians at the planted centers over low noise,
and offsets pointing at the centers inside the instances. Times the compiled
`deeplab2.model.panoptic_deeplab.postprocess.panoptic_deeplab` after warm-up
(compilation is reported separately) and prints one JSON object: median and min
latency in ms, the median CPU time of the process (all threads; close to the
unloaded latency when other jobs share the cores), the same run's latency of a
bare argmax over the logits (one read of the input: a baseline that drifts with
the machine like the result does) and the ratio to it, compile seconds, centers
found, and the growth of the peak resident memory of the process over the
compile and timed runs. With `--forward_backbone` (default resnet50; `none`
skips it) it also times that Panoptic-DeepLab's forward pass at the same size,
alternating with the post-processing so both see the same load, and reports the
fraction of the forward time the post-processing takes (target: at most 10%).

Usage (options only, no program name):
  deeplab2.benchmarks.postprocess.main(["--repeats", "5"])
"""
import argparse
import json
import resource
import statistics
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.benchmarks import model as model_benchmark
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import builder, profile
from deeplab2.model.panoptic_deeplab import postprocess

TARGET_MS = 150.0
TARGET_FRACTION_OF_FORWARD = 0.10
CITYSCAPES = get_dataset_info("cityscapes")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py postprocess",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1025, 2049),
                        metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--classes", type=int, default=19,
                        help="semantic classes; the last 8/19 of them are things")
    parser.add_argument("--centers", type=int, default=30, help="planted instances")
    parser.add_argument("--keep_k", type=int, default=200)
    parser.add_argument("--nms_kernel", type=int, default=13)
    parser.add_argument("--tile_size", type=int, default=32,
                        help="tile side of the grouping pass (speed only)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forward_backbone", default="resnet50",
                        help="time this Panoptic-DeepLab's forward pass too; 'none' skips it")
    parser.add_argument("--forward_output_stride", type=int, default=32)
    return parser.parse_args(argv)


def _smooth_noise(rng, height, width, channels, cell=16):
    """Bilinearly upsampled coarse noise: smooth like upsampled network outputs."""
    coarse = rng.standard_normal((1, height // cell + 2, width // cell + 2, channels))
    return tf.image.resize(coarse.astype(np.float32), (height, width))[0].numpy()


def make_inputs(rng, height, width, num_classes, thing_ids, num_centers):
    """One image of model-like outputs: (logits, heatmap, offset) without batch dim."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    stuff = [c for c in range(num_classes) if c not in thing_ids]
    label = np.full((height, width), stuff[0], np.int32)  # ground
    horizon = height * (0.45 + 0.05 * np.sin(xx / 170 + rng.uniform(0, 6)))
    label[yy < horizon] = stuff[min(2, len(stuff) - 1)]  # buildings
    label[yy < horizon - 0.25 * height] = stuff[-1]  # sky
    heatmap = rng.uniform(0, 0.05, (height, width)).astype(np.float32)
    offset = 0.5 * _smooth_noise(rng, height, width, 2)
    for _ in range(num_centers):
        cy, cx = rng.uniform(0.35, 0.9) * height, rng.uniform(0, width)
        ry, rx = rng.uniform(10, 80), rng.uniform(10, 120)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        label[inside] = rng.choice(thing_ids)
        offset[inside, 0] = cy - yy[inside]
        offset[inside, 1] = cx - xx[inside]
        gaussian = rng.uniform(0.5, 1.0) * np.exp(
            -((yy - round(cy)) ** 2 + (xx - round(cx)) ** 2) / (2 * 8.0 ** 2))
        np.maximum(heatmap, gaussian, out=heatmap)
    logits = 4 * np.eye(num_classes, dtype=np.float32)[label]
    logits += _smooth_noise(rng, height, width, num_classes)
    return logits, heatmap[..., None], offset


def _median_ms(function, argument, repeats: int) -> float:
    """Median latency of `function(argument)` after one warm-up call."""
    function(argument).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(argument).numpy()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Times the post-processing; returns the JSON-ready results."""
    height, width = args.size
    num_things = max(1, round(args.classes * 8 / 19))
    thing_ids = tuple(range(args.classes - num_things, args.classes))
    rng = np.random.default_rng(args.seed)
    images = [make_inputs(rng, height, width, args.classes, thing_ids, args.centers)
              for _ in range(args.batch)]
    logits, heatmap, offset = (tf.constant(np.stack(parts)) for parts in zip(*images))

    def call():
        result = postprocess.panoptic_deeplab(
            logits, heatmap, offset, thing_class_ids=thing_ids,
            label_divisor=CITYSCAPES.label_divisor, ignore_label=CITYSCAPES.ignore_label,
            stuff_area_limit=CITYSCAPES.stuff_area_limit, nms_kernel=args.nms_kernel,
            keep_k_centers=args.keep_k, tile_size=args.tile_size)
        return {key: value.numpy() for key, value in result.items()}

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    result = call()
    compile_s = time.perf_counter() - start
    for _ in range(args.warmup):
        call()
    forward = None
    if args.forward_backbone != "none":
        model = builder.build_model(dataset=profile.placeholder_dataset(args.classes),
                                    backbone=args.forward_backbone,
                                    output_stride=args.forward_output_stride)
        forward = model_benchmark.TimedForward(model, (height, width), args.warmup)
    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
        if forward is not None:
            forward.times_ms.append(forward())
    median = statistics.median(times)
    argmax_ms = _median_ms(tf.function(lambda x: tf.argmax(x, axis=-1), jit_compile=True),
                           logits, args.repeats)
    report = {
        "benchmark": "postprocess",
        "input": [args.batch, height, width, args.classes],
        "centers_planted": args.centers,
        "centers_found": int((result[common.INSTANCE_CENTERS][..., 0] >= 0).sum()),
        "keep_k": args.keep_k,
        "nms_kernel": args.nms_kernel,
        "tile_size": args.tile_size,
        "thing_pixel_fraction": round(float(np.isin(result[common.SEMANTIC], thing_ids).mean()), 3),
        "repeats": args.repeats,
        "median_ms": round(median, 1),
        "min_ms": round(min(times), 1),
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "argmax_baseline_ms": round(argmax_ms, 1),
        "ratio_to_argmax": round(median / argmax_ms, 1),
        "first_call_s": round(compile_s, 2),
        "target_ms": TARGET_MS,
        "meets_target": median <= TARGET_MS,
        "peak_rss_growth_mb": round(_peak_rss_mb() - rss_before, 1),
    }
    if forward is not None:
        forward_ms = statistics.median(forward.times_ms)
        report.update({
            "forward_backbone": args.forward_backbone,
            "forward_output_stride": args.forward_output_stride,
            "forward_median_ms": round(forward_ms, 1),
            "fraction_of_forward": round(median / forward_ms, 3),
            "target_fraction_of_forward": TARGET_FRACTION_OF_FORWARD,
            "meets_fraction_target": median <= TARGET_FRACTION_OF_FORWARD * forward_ms,
        })
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
