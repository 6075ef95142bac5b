"""Benchmark: examples per second of the training step, compiled with XLA and not, float32 and bfloat16.

For each backbone, builds the default Panoptic-DeepLab of that backbone for
Cityscapes (19 classes) at the given crop (or, with `--deeplab2_config`,
google-research/deeplab2's architecture of that config; with
`--meta_architecture`, a top-down family's default model), and times the
trainer's own step (deeplab2.training.train_loop: forward pass, losses,
gradients, Adam update) on one fixed batch with real targets, repeated, so
that the input pipeline does not count. The uncompiled and the XLA-compiled
step (`jit_compile`), and with `--bfloat16` both again with the model built
under Keras's mixed_bfloat16 policy (as `Trainer.mixed_precision =
"bfloat16"` builds it), are timed alternately in one run, after a warm-up
that includes compilation, so all see the same machine load (all start from
the same weights; their first losses differ by the dropout masks and the
precision only). Each step runs with the trainer's graph optimization
(`graph_optimization` in the report; see deeplab2.training.train_loop); where
that is off (hosts without GPUs or TPUs), `--grappler` adds
"uncompiled_grappler", the uncompiled float32 step with Grappler on. Prints
one JSON object with the median seconds per step, examples/s and each
variant's speed-up over the uncompiled float32 step.
"""
import argparse
import json
import statistics
import tempfile
import time
from typing import Dict, Sequence

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.benchmarks.data import make_scene
from deeplab2.model import build_model, builder, get_meta_architecture, meta_architecture_names
from deeplab2.training import config as config_lib
from deeplab2.training.optimizer import FusedAdam
from deeplab2.training.train_loop import LoopOptions, TrainLoop, default_graph_optimization

DEFAULT_BACKBONES = ("mobilenet_v3_small", "resnet50")


def _batch(config, batch_size: int, seed: int) -> Dict[str, tf.Tensor]:
    """A training batch of street-like scenes at the crop size, with targets
    and the seeds of a top-down model's own sampling (as the pipeline's)."""
    targets = get_meta_architecture(config.meta_architecture).training_targets(config)
    examples = []
    for i in range(batch_size):
        image, label = make_scene(seed + i, *config.crop_size)
        example = {common.IMAGE: tf.constant(image, tf.float32),
                   common.PANOPTIC_LABEL: tf.constant(label),
                   common.SAMPLE_SEED: tf.constant([seed, i], tf.int32)}
        example.update(targets(example[common.PANOPTIC_LABEL]))
        examples.append(example)
    return {k: tf.stack([e[k] for e in examples]) for k in examples[0]}


def _model_options(backbone: str, crop, output_stride: int, deeplab2_config,
                   meta_architecture: str = "panoptic_deeplab"):
    if deeplab2_config:
        options = config_lib.model_options(config_lib.deeplab2_config_file(deeplab2_config))
        return dict(options, crop_size=crop)
    return dict(meta_architecture=meta_architecture, dataset="cityscapes", backbone=backbone,
                crop_size=crop, output_stride=output_stride)


def _loop(options, batch_size: int, jit_compile: bool, precision: str, work_dir: str,
          seed: int, graph_optimization=None) -> TrainLoop:
    strategy = tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(builder.COMPUTE_DTYPES[precision])
    try:
        model = build_model(**options)
    finally:
        keras.config.set_dtype_policy(previous)
    config = model.model_config
    family = get_meta_architecture(config.meta_architecture)
    batch = _batch(config, batch_size, seed)
    loop = TrainLoop(strategy, model, family.training_loss(config),
                     FusedAdam(1e-4),
                     lambda context, start: tf.data.Dataset.from_tensors(batch).repeat(),
                     work_dir, LoopOptions(num_steps=1 << 30, global_batch_size=batch_size,
                                           steps_per_loop=1, jit_compile=jit_compile,
                                           graph_optimization=graph_optimization),
                     forward_fn=family.training_outputs)
    return loop


def run_backbone(backbone: str, args: argparse.Namespace) -> Dict:
    """Times the step variants of one backbone."""
    options = _model_options(backbone, tuple(args.input_size), args.output_stride,
                             args.deeplab2_config, args.meta_architecture)
    # (name, jit_compile, precision, graph optimization; None: the trainer's)
    variants = [("uncompiled", False, "float32", None), ("compiled", True, "float32", None)]
    if args.grappler and not default_graph_optimization():
        variants.append(("uncompiled_grappler", False, "float32", True))
    if args.bfloat16:
        variants += [("uncompiled_bfloat16", False, "bfloat16", None),
                     ("compiled_bfloat16", True, "bfloat16", None)]
    if args.skip_compiled:
        variants = [variant for variant in variants if not variant[1]]
    with tempfile.TemporaryDirectory() as work_dir:
        loops = {name: _loop(options, args.batch_size, jit, precision, f"{work_dir}/{name}",
                             args.seed, graph_optimization)
                 for name, jit, precision, graph_optimization in variants}
        iterators = {name: loop.data_iterator(0) for name, loop in loops.items()}
        warmup_s, first_loss = {}, {}
        for name, loop in loops.items():
            start = time.perf_counter()
            for step in range(max(args.warmup, 1)):
                loss = float(loop.run_loop(1, iterators[name])[0]["total_loss"].numpy())
                if step == 0:
                    first_loss[name] = loss
            warmup_s[name] = round(time.perf_counter() - start, 1)
        times = {name: [] for name in loops}
        for _ in range(args.repeats):  # alternate: both share the machine's load
            for name, loop in loops.items():
                start = time.perf_counter()
                loop.run_loop(1, iterators[name])[0]["total_loss"].numpy()
                times[name].append(time.perf_counter() - start)
    # Rates and ratios come from the unrounded medians; the medians keep 10 us
    # so that a fast step's reported rate still agrees with its reported time.
    medians = {name: statistics.median(times[name]) for name in loops}
    result = {}
    for name in loops:
        result[name] = {"median_s_per_step": round(medians[name], 5),
                        "examples_per_s": round(args.batch_size / medians[name], 3),
                        "warmup_s": warmup_s[name], "first_total_loss": first_loss[name]}
    for name in loops:
        if name != "uncompiled":
            result[f"{name}_speedup"] = round(medians["uncompiled"] / medians[name], 3)
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", action="append",
                        help=f"repeatable; default {', '.join(DEFAULT_BACKBONES)}")
    parser.add_argument("--meta_architecture", default="panoptic_deeplab",
                        choices=meta_architecture_names())
    parser.add_argument("--input_size", type=int, nargs=2, default=(513, 1025),
                        metavar=("H", "W"), help="training crop (Panoptic-DeepLab: "
                        "k * output_stride + 1; top-down families: multiples of 32)")
    parser.add_argument("--output_stride", type=int, default=32)
    parser.add_argument("--deeplab2_config", default=None,
                        help="google-research/deeplab2's architecture of this config "
                             "(e.g. resnet50_os32) instead of the default one")
    parser.add_argument("--bfloat16", action="store_true",
                        help="also time both steps with mixed_bfloat16 precision")
    parser.add_argument("--grappler", action="store_true",
                        help="also time the uncompiled float32 step with Grappler's graph "
                             "rewrites, which the trainer skips on hosts without GPUs or TPUs")
    parser.add_argument("--skip_compiled", action="store_true",
                        help="time the uncompiled steps only (XLA compiles a real "
                             "backbone's step for minutes on a CPU)")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.deeplab2_config and args.backbone:
        parser.error("--deeplab2_config sets the backbone and output stride: drop --backbone.")
    if args.deeplab2_config and args.meta_architecture != "panoptic_deeplab":
        parser.error("--deeplab2_config is a Panoptic-DeepLab: drop --meta_architecture.")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    report = {
        "benchmark": "train", "meta_architecture": args.meta_architecture,
        "deeplab2_config": args.deeplab2_config,
        "input_size": list(args.input_size),
        "batch_size": args.batch_size,
        "output_stride": None if args.deeplab2_config else args.output_stride,
        "repeats": args.repeats,
        "graph_optimization": default_graph_optimization(),
        "backbones": {name: run_backbone(name, args) for name in (
            [args.deeplab2_config] if args.deeplab2_config else
            args.backbone or DEFAULT_BACKBONES)},
    }
    print(json.dumps(report, indent=2))
    return 0
