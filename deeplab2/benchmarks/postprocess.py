"""Benchmark: Panoptic-DeepLab upsampling and post-processing latency on a realistic random input.

Builds model-like outputs for a street scene at the input size: smooth
semantic logits with stuff bands and planted thing instances (ellipses of the
Cityscapes thing classes), a center heatmap of sigma-8 Gaussians at the
planted centers over low noise, and offsets pointing at the centers inside
the instances; the network's heads are these at stride 4 (every fourth pixel,
offsets in stride-4 pixels), as the model computes them before its
upsampling. Times, after warm-up (compilation is reported separately):

- the path of plain inference: the compiled
  `deeplab2.model.panoptic_deeplab.postprocess.panoptic_deeplab` given the
  heads and the output size, upsampling inside (`median_ms`);
- the baseline in the same run: the model's upsampling of the heads
  (TensorFlow's kernel), the softmax probabilities at full resolution and
  the post-processing of those (`full_resolution_baseline_ms`), as the
  predictor did before the upsampling moved inside.

Prints one JSON object: median and min latency in ms, the median CPU time of
the process (all threads), the baseline and the speed ratio, the same run's
latency of a bare argmax over full-resolution logits (one read of what the
baseline stores: a yardstick that drifts with the machine like the result),
compile seconds, centers found, and the growth of the peak resident memory
(over both paths: the baseline runs in the same process).
It also times the stages of the plain-inference path, each compiled alone
(`stages_ms`: the upsampled argmax, the heatmap's and offsets' upsampling,
the center selection, and the grouping and scoring of the tiles with thing
pixels, whose number it reports as `thing_tiles`); XLA fuses across them in
the whole, so their sum is near, not equal to, `median_ms`.
With `--forward_backbone` (default resnet50; `none` skips it) it also times
that Panoptic-DeepLab's network (its heads, `network_outputs`) at the same
size, alternating with the post-processing so both see the same load, and
reports the fraction of the network's time the upsampling and
post-processing take (target: at most 5%).

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
from deeplab2.benchmarks._timing import median_ms
from deeplab2.benchmarks import model as model_benchmark
from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.model import builder, profile
from deeplab2.model.meta import get_meta_architecture
from deeplab2.model.panoptic_deeplab import postprocess
from deeplab2.model.panoptic_deeplab.postprocess import centers as centers_lib
from deeplab2.model.panoptic_deeplab.postprocess import instances
from deeplab2.model.panoptic_deeplab.postprocess.panoptic_deeplab import (upsample_heads,
                                                                           upsampled_argmax)
from deeplab2.model.panoptic_deeplab.postprocess import tiles
from deeplab2.model.panoptic_deeplab.model import PanopticDeepLab

TARGET_MS = 150.0
TARGET_FRACTION_OF_NETWORK = 0.05
HEAD_STRIDE = 4
CITYSCAPES = get_dataset_info("cityscapes")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py postprocess",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(1025, 2049),
                        metavar=("HEIGHT", "WIDTH"), help="sides 4 * k + 1")
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
    args = parser.parse_args(argv)
    if any(side < 5 or (side - 1) % HEAD_STRIDE for side in args.size):
        parser.error(f"--size sides must be {HEAD_STRIDE} * k + 1 (k >= 1), the sizes "
                     f"whose heads are at stride {HEAD_STRIDE}; got {args.size}.")
    return args


def _smooth_noise(rng, height, width, channels, cell=16):
    """Bilinearly upsampled coarse noise: smooth like upsampled network outputs."""
    coarse = rng.standard_normal((1, height // cell + 2, width // cell + 2, channels))
    return tf.image.resize(coarse.astype(np.float32), (height, width))[0].numpy()


def make_inputs(rng, height, width, num_classes, thing_ids, num_centers, grid=1):
    """One image of model-like outputs: (logits, heatmap, offset) without batch dim;
    centers on multiples of `grid` (a heatmap peak on a node of the heads'
    grid stays one peak after upsampling, instead of a plateau of equal
    values between two nodes)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    stuff = [c for c in range(num_classes) if c not in thing_ids]
    label = np.full((height, width), stuff[0], np.int32)  # ground
    horizon = height * (0.45 + 0.05 * np.sin(xx / 170 + rng.uniform(0, 6)))
    label[yy < horizon] = stuff[min(2, len(stuff) - 1)]  # buildings
    label[yy < horizon - 0.25 * height] = stuff[-1]  # sky
    heatmap = rng.uniform(0, 0.05, (height, width)).astype(np.float32)
    offset = 0.5 * _smooth_noise(rng, height, width, 2)
    for _ in range(num_centers):
        cy, cx = rng.uniform(0.35, 0.9) * height, rng.uniform(0, width - 1)
        cy, cx = grid * round(cy / grid), grid * round(cx / grid)
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


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _heads(logits, heatmap, offset):
    """Full-resolution outputs -> the network's heads at stride 4 (align
    corners: head pixel k is image pixel 4k; offsets in head pixels)."""
    every = slice(None, None, HEAD_STRIDE)
    return (logits[:, every, every], heatmap[:, every, every],
            offset[:, every, every] / HEAD_STRIDE)


def _stage_times(heads, size, thing_ids, options, repeats: int):
    """(median ms of each stage of the plain-inference path compiled alone,
    number of tiles with thing pixels)."""
    logits, heatmap, offset = heads
    thing_ids = tuple(sorted(thing_ids))
    compiled = lambda f: tf.function(f, jit_compile=True)  # noqa: E731
    argmax = compiled(lambda x: upsampled_argmax(x, size))
    upsample = compiled(lambda h, o: upsample_heads(h, o, size))
    find = compiled(lambda h: centers_lib.find_centers(
        h, threshold=options["center_threshold"], nms_kernel=options["nms_kernel"],
        keep_k=options["keep_k_centers"]))
    semantic = argmax(logits)
    full_heatmap, full_offset = upsample(heatmap, offset)
    centers = find(full_heatmap)
    group = compiled(lambda: instances.group_and_count(
        semantic, logits, True, full_offset, centers, thing_class_ids=thing_ids,
        tile_size=options["tile_size"], upsample_scores=True))
    thing_mask = tf.reduce_any(semantic[..., None] == tf.constant(thing_ids), axis=-1)
    stages = {"upsampled_argmax": (argmax, logits), "upsample_heads": (upsample, heatmap, offset),
              "centers": (find, full_heatmap), "group_and_score_tiles": (group,)}
    times = {name: round(median_ms(function, inputs, repeats=repeats), 1)
             for name, (function, *inputs) in stages.items()}
    return times, int(tiles.list_tiles(thing_mask, options["tile_size"]).count)


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Times the post-processing and its baseline; returns the JSON-ready results."""
    height, width = args.size
    num_things = max(1, round(args.classes * 8 / 19))
    thing_ids = tuple(range(args.classes - num_things, args.classes))
    rng = np.random.default_rng(args.seed)
    images = [make_inputs(rng, height, width, args.classes, thing_ids, args.centers,
                          grid=HEAD_STRIDE) for _ in range(args.batch)]
    heads = [tf.constant(part) for part in _heads(*(np.stack(p) for p in zip(*images)))]
    options = dict(thing_class_ids=thing_ids, label_divisor=CITYSCAPES.label_divisor,
                   ignore_label=CITYSCAPES.ignore_label,
                   stuff_area_limit=CITYSCAPES.stuff_area_limit, center_threshold=0.1,
                   nms_kernel=args.nms_kernel,
                   keep_k_centers=args.keep_k, tile_size=args.tile_size)

    def call():
        result = postprocess.panoptic_deeplab(*heads, output_size=(height, width), **options)
        return {key: value.numpy() for key, value in result.items()}

    @tf.function
    def full_resolution(logits, heatmap, offset):
        outputs = PanopticDeepLab.upsample_outputs(
            {common.SEMANTIC_LOGITS: logits, common.CENTER_HEATMAP: heatmap,
             common.OFFSET: offset}, (height, width))
        return postprocess.panoptic_deeplab(
            None, outputs[common.CENTER_HEATMAP], outputs[common.OFFSET],
            semantic_probabilities=tf.nn.softmax(outputs[common.SEMANTIC_LOGITS]),
            **options)

    def call_baseline():
        return {key: value.numpy() for key, value in full_resolution(*heads).items()}

    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    result = call()
    compile_s = time.perf_counter() - start
    baseline_result = call_baseline()
    for _ in range(args.warmup):
        call()
        call_baseline()
    forward = None
    if args.forward_backbone != "none":
        model = builder.build_model(dataset=profile.placeholder_dataset(args.classes),
                                    backbone=args.forward_backbone,
                                    output_stride=args.forward_output_stride)
        family = get_meta_architecture(model.model_config.meta_architecture)
        forward = model_benchmark.Timed(lambda x: family.network_outputs(model, x),
                                        model_benchmark.random_images((height, width)),
                                        args.warmup)
    times, cpu_times, baseline_times = [], [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
        start = time.perf_counter()
        call_baseline()
        baseline_times.append((time.perf_counter() - start) * 1e3)
        if forward is not None:
            forward.times_ms.append(forward())
    median = statistics.median(times)
    baseline = statistics.median(baseline_times)
    full_logits = PanopticDeepLab.upsample_outputs({common.SEMANTIC_LOGITS: heads[0]},
                                                   (height, width))[common.SEMANTIC_LOGITS]
    argmax_ms = median_ms(tf.function(lambda x: tf.argmax(x, axis=-1), jit_compile=True),
                          (full_logits,), repeats=args.repeats)
    stages_ms, thing_tiles = _stage_times(heads, (height, width), thing_ids, options,
                                          args.repeats)
    report = {
        "benchmark": "postprocess",
        "input": [args.batch, height, width, args.classes],
        "heads": list(heads[0].shape),
        "centers_planted": args.centers,
        "centers_found": int((result[common.INSTANCE_CENTERS][..., 0] >= 0).sum()),
        "keep_k": args.keep_k,
        "nms_kernel": args.nms_kernel,
        "tile_size": args.tile_size,
        "thing_pixel_fraction": round(float(np.isin(result[common.SEMANTIC], thing_ids).mean()), 3),
        "same_panoptic_as_baseline": bool(np.array_equal(result[common.PANOPTIC],
                                                         baseline_result[common.PANOPTIC])),
        "repeats": args.repeats,
        "median_ms": round(median, 1),
        "min_ms": round(min(times), 1),
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "full_resolution_baseline_ms": round(baseline, 1),
        "speedup_over_baseline": round(baseline / median, 2),
        "argmax_baseline_ms": round(argmax_ms, 1),
        "ratio_to_argmax": round(median / argmax_ms, 1),
        "stages_ms": stages_ms,
        "thing_tiles": thing_tiles,
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
            "network_median_ms": round(forward_ms, 1),
            "fraction_of_network": round(median / forward_ms, 3),
            "baseline_fraction_of_network": round(baseline / forward_ms, 3),
            "target_fraction_of_network": TARGET_FRACTION_OF_NETWORK,
            "meets_fraction_target": median <= TARGET_FRACTION_OF_NETWORK * forward_ms,
        })
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
