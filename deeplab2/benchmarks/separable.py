"""Benchmark: formulations of the decoders' 5x5 depthwise-separable convolution at stride 4.

Panoptic-DeepLab's decoders and heads run 5x5 depthwise convolutions, each
followed by a 1x1 (pointwise) convolution, at stride 4: at 1025x2049 the
semantic decoder's first one reads [1, 257, 513, 288] and writes 256
channels. Times, on random inputs of that shape (batch norm folded, ReLU
after each convolution, as inference runs them), in one run, each in its own
block after warm-up:

- `depthwise`, `pointwise`, `separable`: TensorFlow's kernels (oneDNN), as
  the model runs them;
- `depthwise_xla`, `separable_xla`: the same ops compiled with XLA;
- `depthwise_shifts_xla`: the depthwise convolution as 25 shifted
  multiply-adds, fused into one loop by XLA;
- `separable_bfloat16`: TensorFlow's kernels in bfloat16;
- `backbone_conv`: a 3x3 convolution of ResNet-50's stride-8 stage
  ([1, 129, 257, 128] -> 128), the backbone's rate to compare with.

Reports median ms and GMAC/s of each (multiply-adds counted as the profiler
counts them) and the largest difference of each formulation's output from
TensorFlow's float32 one, relative to its largest magnitude.

  python scripts/benchmark.py separable
"""
import argparse
import json
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2.benchmarks._timing import median_ms

KERNEL = 5


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py separable",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(257, 513, 288),
                        metavar=("HEIGHT", "WIDTH", "CHANNELS"),
                        help="the depthwise convolution's input (default: the semantic "
                             "decoder's at 1025x2049)")
    parser.add_argument("--filters", type=int, default=256, help="pointwise outputs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args(argv)


def _depthwise(x, kernel, bias):
    return tf.nn.relu(tf.nn.bias_add(tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME"),
                                     bias))


def _depthwise_shifts(x, kernel, bias):
    """The same convolution as sums of shifted inputs times per-channel weights."""
    height, width = x.shape[1], x.shape[2]
    pad = KERNEL // 2
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    total = None
    for i in range(KERNEL):
        for j in range(KERNEL):
            term = padded[:, i:i + height, j:j + width, :] * kernel[i, j, :, 0]
            total = term if total is None else total + term
    return tf.nn.relu(total + bias)


def _pointwise(x, kernel, bias):
    return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))


def run(args: argparse.Namespace) -> Dict[str, object]:
    height, width, channels = args.shape
    rng = np.random.default_rng(0)

    def tensor(shape, scale=1.0):
        return tf.constant((rng.standard_normal(shape) * scale).astype(np.float32))

    x = tensor((1, height, width, channels))
    dw = (tensor((KERNEL, KERNEL, channels, 1), 0.2), tensor((channels,), 0.1))
    pw = (tensor((1, 1, channels, args.filters), channels ** -0.5),
          tensor((args.filters,), 0.1))
    depthwise_out = _depthwise(x, *dw)

    def separable(x, *weights):
        return _pointwise(_depthwise(x, *weights[:2]), *weights[2:])

    as_bfloat16 = [tf.cast(t, tf.bfloat16) for t in (x, *dw, *pw)]
    functions = {
        "depthwise": (tf.function(_depthwise), (x, *dw)),
        "depthwise_xla": (tf.function(_depthwise, jit_compile=True), (x, *dw)),
        "depthwise_shifts_xla": (tf.function(_depthwise_shifts, jit_compile=True), (x, *dw)),
        "pointwise": (tf.function(_pointwise), (depthwise_out, *pw)),
        "separable": (tf.function(separable), (x, *dw, *pw)),
        "separable_xla": (tf.function(separable, jit_compile=True), (x, *dw, *pw)),
        "separable_bfloat16": (tf.function(separable), as_bfloat16),
    }
    backbone = (tensor((1, 129, 257, 128)), tensor((3, 3, 128, 128), 128 ** -0.5))
    depthwise_macs = height * width * channels * KERNEL * KERNEL
    pointwise_macs = height * width * channels * args.filters
    macs = {"depthwise": depthwise_macs, "pointwise": pointwise_macs,
            "separable": depthwise_macs + pointwise_macs,
            "backbone_conv": 129 * 257 * 128 * 128 * 9}
    reference = {"depthwise": depthwise_out, "pointwise": _pointwise(depthwise_out, *pw),
                 "separable": _pointwise(depthwise_out, *pw)}
    results = {}
    for name, (function, inputs) in functions.items():
        kind = name.split("_")[0]
        ms = median_ms(function, inputs, warmup=args.warmup, repeats=args.repeats)
        expected = reference[kind].numpy()
        error = np.abs(tf.cast(function(*inputs), tf.float32).numpy() - expected).max()
        results[name] = {"median_ms": round(ms, 1),
                         "gmac_per_s": round(macs[kind] / ms / 1e6, 1),
                         "relative_error": float(f"{error / np.abs(expected).max():.2g}")}
    conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    ms = median_ms(conv, backbone, warmup=args.warmup, repeats=args.repeats)
    results["backbone_conv"] = {"median_ms": round(ms, 1),
                                "gmac_per_s": round(macs["backbone_conv"] / ms / 1e6, 1)}
    return {"benchmark": "separable", "input": [1, height, width, channels],
            "filters": args.filters, "gmacs": {k: round(v / 1e9, 2) for k, v in macs.items()},
            "formulations": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
