"""Benchmark: throughput of the training input pipeline, in examples per second.

Writes a few Cityscapes-like TFRecords (1024x2048 PNG images with smooth
shading and texture; labels with ~20 stuff regions, ~30 instances of all sizes,
a crowd region and an ignored ego-vehicle band), then measures after warm-up:
- the training pipeline with the Panoptic-DeepLab targets (random scale
  0.5-2.0, crop 1025x2049, flip) of a Cityscapes model config, examples/s;
- decoding alone (parse + PNG image + label), examples/s;
- bytes of the stored label per example vs raw int32 (4 * H * W).
Other processes sharing the cores slow the wall-clock rates, so the process
CPU time per example is reported too, with the rate it allows on idle cores
(cpu_bound_examples_per_s) and the training/decoding cost ratio, comparable
with the reference's 19 / 5.1. Prints one JSON object.

Usage (options only, no program name):
  deeplab2.benchmarks.data.main(["--examples", "32"])
"""
import argparse
import io
import json
import os
import tempfile
import time
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.data.pipeline import TrainingInput, training_dataset
from deeplab2.data.tfrecord import decode_example, encode_example
from deeplab2.model.builder import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD
from deeplab2.model.meta import get_meta_architecture, make_config

INFO = get_dataset_info("cityscapes")
TARGET_EXAMPLES_PER_S = 15.0
# deeplab2 on 2 idle cores (BENCHMARKS.md): decoding 19 examples/s, training 5.1.
REFERENCE_TRAINING_OVER_DECODE = round(19 / 5.1, 2)
_LABEL_FEATURES = ("label/segment_map", "label/segment_ids", "label/segment_is_crowd")


def make_scene(seed: int, height: int, width: int):
    """(uint8 image HxWx3, int32 panoptic label HxW) of a street-like scene."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    # ~20 stuff regions: a Voronoi partition with random stuff classes.
    seeds = rng.uniform([0, 0], [height, width], size=(20, 2)).astype(np.float32)
    nearest = np.zeros((height, width), np.int32)
    best = np.full((height, width), np.inf, np.float32)
    for i, (sy, sx) in enumerate(seeds):
        dist = (yy - sy) ** 2 + (xx - sx) ** 2
        closer = dist < best
        nearest[closer], best[closer] = i, dist[closer]
    stuff_classes = rng.integers(0, 11, size=20)
    label = stuff_classes[nearest].astype(np.int32) * INFO.label_divisor
    # ~30 instances from tiny to large (later ones occlude earlier ones), one crowd.
    next_instance = {}
    for i in range(31):
        cls = int(rng.integers(11, 19))
        cy, cx = rng.uniform(0.3 * height, 0.9 * height), rng.uniform(0, width)
        ry = float(np.exp(rng.uniform(np.log(6), np.log(160))))
        rx = ry * rng.uniform(0.5, 2.0)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        if i == 30:
            label[mask] = cls * INFO.label_divisor  # crowd
        else:
            next_instance[cls] = next_instance.get(cls, 0) + 1
            label[mask] = cls * INFO.label_divisor + next_instance[cls]
    label[int(0.92 * height):] = INFO.ignore_panoptic_id
    # Image: class colors, smooth shading, texture and a little noise.
    semantic = np.minimum(label // INFO.label_divisor, INFO.num_classes)
    palette = np.array(INFO.colors + ((0, 0, 0),), np.float32)
    shade = 0.75 + 0.25 * np.sin(yy / 97.0)[..., None] * np.cos(xx / 131.0)[..., None]
    texture = 12.0 * np.sin(xx / 5.0 + 3 * np.sin(yy / 9.0))[..., None]
    image = palette[semantic] * shade + texture + rng.normal(0, 3, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def write_records(directory: str, num_records: int, height: int, width: int) -> int:
    """Writes one record per file; returns the mean stored label bytes."""
    label_bytes = []
    for i in range(num_records):
        image, label = make_scene(i, height, width)
        ids, segment_map = np.unique(label, return_inverse=True)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        record = encode_example(buffer.getvalue(), "png", segment_map.reshape(label.shape),
                                ids.tolist(), [0] * len(ids), f"scene_{i}", f"scene_{i}.png")
        feature = tf.train.Example.FromString(record).features.feature
        label_bytes.append(sum(feature[k].ByteSize() for k in _LABEL_FEATURES))
        with tf.io.TFRecordWriter(os.path.join(directory, f"bench-{i:05d}.tfrecord")) as w:
            w.write(record)
    return int(np.mean(label_bytes))


def _throughput(dataset: tf.data.Dataset, batch_size: int, warmup: int,
                examples: int) -> Tuple[float, float]:
    """(examples per second, process CPU milliseconds per example) after warm-up.

    CPU time per example shows the cost when other processes share the cores.
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    batches = max(1, examples // batch_size)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    count = batches * batch_size
    return (count / (time.perf_counter() - start),
            1000 * (time.process_time() - cpu_start) / count)


def training_config(crop_size: Sequence[int], output_stride: int):
    """The ModelConfig of a Panoptic-DeepLab trained on Cityscapes crops: what
    the training pipeline reads (dataset, crop, output stride, pad value)."""
    return make_config("panoptic_deeplab", INFO, output_stride=output_stride,
                       crop_size=crop_size, pixel_mean=DEFAULT_PIXEL_MEAN,
                       pixel_std=DEFAULT_PIXEL_STD, architecture={}, postprocess={})


def run(num_records: int, height: int, width: int, crop_size: Sequence[int],
        output_stride: int, batch_size: int, warmup: int, examples: int,
        work_dir: str) -> Dict:
    config = training_config(crop_size, output_stride)
    targets = get_meta_architecture(config.meta_architecture).training_targets(config)
    label_bytes = write_records(work_dir, num_records, height, width)
    pattern = os.path.join(work_dir, "*.tfrecord")
    decoded = (tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)).repeat()
               .map(decode_example, num_parallel_calls=tf.data.AUTOTUNE)
               .prefetch(tf.data.AUTOTUNE))
    decode_rate, decode_cpu = _throughput(decoded, 1, warmup, examples)
    training = training_dataset(
        pattern, config, targets, global_batch_size=batch_size, seed=0,
        options=TrainingInput(min_scale=0.5, max_scale=2.0, scale_step=0.1, flip_prob=0.5))
    train_rate, train_cpu = _throughput(training, batch_size, warmup, examples)
    raw = 4 * height * width
    return {
        "benchmark": "data",
        "training_examples_per_s": round(train_rate, 2),
        "target_examples_per_s": TARGET_EXAMPLES_PER_S,
        "training_cpu_ms_per_example": round(train_cpu, 1),
        "cpu_bound_examples_per_s": round(1000 * os.cpu_count() / train_cpu, 2),
        "decode_only_examples_per_s": round(decode_rate, 2),
        "decode_only_cpu_ms_per_example": round(decode_cpu, 1),
        "training_over_decode_cpu": round(train_cpu / decode_cpu, 2),
        "reference_training_over_decode": REFERENCE_TRAINING_OVER_DECODE,
        "label_bytes_per_example": label_bytes,
        "raw_int32_label_bytes": raw,
        "label_compression_ratio": round(raw / label_bytes, 1),
        "image_size": [height, width],
        "crop_size": list(crop_size),
        "output_stride": output_stride,
        "scale_range": [0.5, 2.0],
        "batch_size": batch_size,
        "measured_examples": max(1, examples // batch_size) * batch_size,
        "cpu_count": os.cpu_count(),
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmark data",
        description="Examples/s of the training input pipeline with all targets.")
    parser.add_argument("--records", type=int, default=4, help="Distinct records.")
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--crop_size", type=int, nargs=2, default=(1025, 2049),
                        help="k * output_stride + 1 each")
    parser.add_argument("--output_stride", type=int, default=32,
                        help="of the model the crops are for")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=4, help="Batches before timing.")
    parser.add_argument("--examples", type=int, default=32, help="Examples timed.")
    parser.add_argument("--work_dir", default=None, help="Where the records go.")
    args = parser.parse_args(list(argv))
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work_dir:
        report = run(args.records, args.height, args.width, args.crop_size,
                     args.output_stride, args.batch_size, args.warmup, args.examples,
                     work_dir)
    print(json.dumps(report))
    return 0
