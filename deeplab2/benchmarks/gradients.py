"""Benchmark: forward pass plus gradient of the layers whose gradients this
library computes itself, against the formulation they replace, in one run.

Each case times a baseline against the library's formulation:
- `roi_align`: RoIAlign on UPSNet's RoI loss shape (133 classes pooled to
  28x28 bins, 2x2 samples each, 56 boxes on a 56x80 map at stride 4).
  Baseline `gather_autodiff`: TensorFlow's gradient of the gather form (the
  library's code before `roi_align._scattered_gradient`); ours:
  crop_and_resize with the scattered gradient, as training runs it.
- `atrous`: an ASPP branch, 3x3 at rate 9, [1, 17, 33, 2048] to 256
  channels. Baseline `tensorflow`: `tf.nn.convolution` with TensorFlow's
  gradient (space-to-batch); ours: `conv_gradients.atrous_conv2d`.
- `pointwise`: a 1x1 convolution, [1, 129, 257, 256] to 64 channels.
  Baseline `tensorflow`; ours: `conv_gradients.pointwise_conv2d`.
- `deformable`: a 3x3 deformable layer, [2, 32, 48, 32] to 32 channels (a
  quickstart UPSNet's P2). Baseline `tap_by_tap` (how maps whose 9 samples
  exceed `all_taps_max_elements` run; without recomputation); ours: all 9
  taps in one matrix product (how smaller maps run), whatever the size.

Each function computes a weighted sum of the outputs and its gradients (the
map, and the kernel where there is one) in a `tf.function`, not compiled
with XLA, as the uncompiled training step runs it. Reports median ms of
both, the speed-up, the largest difference of the gradients relative to the
largest magnitude of the baseline's, and the median ms of each forward pass
alone.

  python scripts/benchmark.py gradients
"""
import argparse
import json
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from deeplab2.benchmarks._timing import median_ms
from deeplab2.model.layers import conv_gradients
from deeplab2.model.layers.deformable_conv import DeformableConv2D
from deeplab2.model.top_down import roi_align

CASES = ("roi_align", "atrous", "pointwise", "deformable")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py gradients",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies the sizes of every case (the atrous map's "
                             "height and width excepted) and its channels (tests)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args(argv)


def _forward(forward: Callable, tensors: Sequence[tf.Tensor]):
    """A tf.function of the forward pass alone."""
    return tf.function(lambda: forward(*tensors), autograph=False)


def _gradients(forward: Callable, tensors: Sequence[tf.Tensor], upstream: tf.Tensor):
    """A tf.function giving d sum(forward(*tensors) * upstream) / d tensors."""
    @tf.function(autograph=False)
    def run():
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = tf.reduce_sum(forward(*tensors) * upstream)
        return tape.gradient(loss, tensors)
    return run


def _size(value: int, scale: float) -> int:
    return max(1, round(value * scale))


# (baseline name, baseline forward, our forward, differentiated tensors, output shape).
Case = Tuple[str, Callable, Callable, Sequence[tf.Tensor], Tuple[int, ...]]


def _roi_align_case(rng, scale) -> Case:
    height, width, classes = _size(56, scale), _size(80, scale), _size(133, scale)
    bins, num_boxes = _size(28, scale), _size(56, scale)
    features = tf.constant(rng.standard_normal((1, height, width, classes)), tf.float32)
    # Boxes in image pixels (stride 4) covering 1/8 to 3/4 of each side.
    sides = rng.uniform(0.125, 0.75, (num_boxes, 2)) * [width * 4, height * 4]
    starts = rng.uniform(0, 1, (num_boxes, 2)) * ([width * 4, height * 4] - sides)
    boxes = tf.constant(np.concatenate([starts, starts + sides], 1)[None], tf.float32)

    def pooled(method):
        return lambda features: roi_align.roi_align(features, boxes, bins, 4, method=method)
    return ("gather_autodiff", pooled("gather"), pooled("crop_and_resize"), [features],
            (1, num_boxes, bins, bins, classes))


def _conv_case(rng, shape, kernel_size, filters, rate, ours) -> Case:
    channels = shape[-1]
    inputs = tf.constant(rng.standard_normal(shape), tf.float32)
    kernel = tf.constant(rng.standard_normal((kernel_size, kernel_size, channels, filters))
                         * (kernel_size * kernel_size * channels) ** -0.5, tf.float32)

    def tensorflow(inputs, kernel):
        return tf.nn.convolution(inputs, kernel, padding="SAME", dilations=rate)
    return "tensorflow", tensorflow, ours, [inputs, kernel], tuple(shape[:3]) + (filters,)


def _deformable_case(rng, scale) -> Case:
    shape = (2, _size(32, scale), _size(48, scale), _size(32, scale))
    filters = _size(32, scale)
    inputs = tf.constant(rng.standard_normal(shape), tf.float32)
    layers = {}
    for name, max_elements in (("tap_by_tap", 0), ("all_taps", 2 ** 62)):
        layer = DeformableConv2D(filters, all_taps_max_elements=max_elements)
        layer.build(shape)
        layers[name] = layer
    weights = [rng.standard_normal(w.shape).astype(np.float32) * 0.05
               for w in layers["tap_by_tap"].get_weights()]
    for layer in layers.values():
        layer.set_weights(weights)

    def forward(name):
        # Inference mode: no tf.recompute_grad, so both differ only in the products.
        return lambda inputs: layers[name](inputs, training=False)
    return ("tap_by_tap", forward("tap_by_tap"), forward("all_taps"), [inputs],
            shape[:3] + (filters,))


def _case(name: str, rng, scale: float) -> Case:
    if name == "roi_align":
        return _roi_align_case(rng, scale)
    if name == "atrous":
        # The map keeps its size: smaller, the taps at rate 9 would read only padding.
        shape = (1, 17, 33, _size(2048, scale))
        return _conv_case(rng, shape, 3, _size(256, scale), 9,
                          lambda x, k: conv_gradients.atrous_conv2d(x, k, 9))
    if name == "pointwise":
        shape = (1, _size(129, scale), _size(257, scale), _size(256, scale))
        return _conv_case(rng, shape, 1, _size(64, scale), 1, conv_gradients.pointwise_conv2d)
    return _deformable_case(rng, scale)


def run(args: argparse.Namespace) -> Dict[str, object]:
    rng = np.random.default_rng(0)
    results = {}
    for name in args.cases:
        baseline_name, baseline, ours, tensors, output_shape = _case(name, rng, args.scale)
        upstream = tf.constant(rng.standard_normal(output_shape), tf.float32)
        functions = {"baseline": _gradients(baseline, tensors, upstream),
                     "deeplab2": _gradients(ours, tensors, upstream)}
        times = {key: median_ms(function, warmup=args.warmup, repeats=args.repeats)
                 for key, function in functions.items()}
        expected, actual = functions["baseline"](), functions["deeplab2"]()
        error = max(float(np.abs(a.numpy() - e.numpy()).max() / np.abs(e.numpy()).max())
                    for a, e in zip(actual, expected))
        forward_ms = {key: median_ms(_forward(function, tensors), warmup=args.warmup,
                                     repeats=args.repeats)
                      for key, function in (("baseline", baseline), ("deeplab2", ours))}
        results[name] = {"baseline": baseline_name,
                         "baseline_ms": round(times["baseline"], 1),
                         "deeplab2_ms": round(times["deeplab2"], 1),
                         "speedup": round(times["baseline"] / times["deeplab2"], 2),
                         "gradient_relative_difference": float(f"{error:.2g}"),
                         "baseline_forward_ms": round(forward_ms["baseline"], 1),
                         "deeplab2_forward_ms": round(forward_ms["deeplab2"], 1),
                         "inputs": [list(t.shape) for t in tensors]}
    return {"benchmark": "gradients", "scale": args.scale, "repeats": args.repeats,
            "cases": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
