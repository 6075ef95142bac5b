"""Benchmark: the model families side by side with one backbone, in one run.

Builds each family of `FAMILIES` (or `--families`) with random weights (no
download), the same backbone (default resnet50) at output stride 32 and the
family's default options for the dataset (default cityscapes); for
Panoptic-DeepLab that is the architecture of cityscapes/resnet50_os32.gin
(without its training crop, and with the family's NMS kernel 7 where that
config's post-processing uses 13). Each model runs on random images of the
requested size padded as its family pads it (1024x2048 -> 1025x2049 for
Panoptic-DeepLab, unchanged for the top-down families). Nothing is trained.

Per family: parameters (as the papers count them) and multiply-adds per image
of the timed model (deeplab2.model.profile); the latency of the forward pass,
`Predictor.raw_predictions` (the network; for Panoptic-DeepLab also the
softmax of its semantic logits, which test-time augmentation averages), and of
the post-processing, the family's `postprocess` on those real outputs (the
rest of a `Predictor` call); the ratio of its forward median to
Panoptic-DeepLab's in the same run (null when Panoptic-DeepLab is not run);
the instances in its panoptic output. Timed as `benchmark.py model` times:
graph mode through `tf.function` without XLA `jit_compile` (Panoptic-DeepLab's
post-processing compiles itself with XLA), after warm-up, every function once
per repeat in turn so that all see the same machine load. Random weights
score detections low: as `benchmark.py model`, the detection and fusion score
thresholds are set to 0 where a family has them (all `max_detections`
detections are valid and fused: the post-processing's heaviest load).

Prints one JSON object on stdout and the same as a Markdown table on stderr.

  python scripts/benchmark.py compare --families panoptic_deeplab panoptic_fpn upsnet
  python scripts/benchmark.py compare --input_size 64 128 --warmup 1 --repeats 1 \\
      --option panoptic_fpn:fpn_channels=16
"""
import argparse
import json
import resource
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.benchmarks.model import TOP_DOWN_LOAD_OPTIONS, Timed, random_images
from deeplab2.data.dataset_info import UnknownDatasetError, resolve_dataset
from deeplab2.inference import Predictor
from deeplab2.inference.loading import parse_overrides
from deeplab2.model import builder, profile
from deeplab2.model.meta import get_meta_architecture, make_config, meta_architecture_names

# The families compared, in the order of the report.
FAMILIES = ("panoptic_deeplab", "panoptic_fpn", "upsnet", "seamless")
# Forward latencies are reported as ratios to this family's.
BASELINE = "panoptic_deeplab"
OUTPUT_STRIDE = 32
# Options set where a family has them (an --option value wins): every
# detection of random weights kept and fused (see the module docstring).
LOAD_OPTIONS = {"architecture": dict(TOP_DOWN_LOAD_OPTIONS),
                "postprocess": {"score_threshold": 0.0}}


class UsageError(ValueError):
    """A bad family or option, reported as one line."""


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), metavar="FAMILY",
                        help=f"a subset of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--dataset", default="cityscapes",
                        help="the label space, a dataset name or a .json descriptor")
    parser.add_argument("--input_size", type=int, nargs=2, default=(1024, 2048),
                        metavar=("H", "W"), help="padded as each family pads it")
    parser.add_argument("--batch_size", type=int, default=1,
                        help="images per timed call (multiply-adds are per image)")
    parser.add_argument("--option", action="append", default=[],
                        metavar="[FAMILY:]KEY=VALUE",
                        help="an architecture option of FAMILY, or of every family "
                             "without a prefix (repeatable), e.g. panoptic_fpn:max_detections=50")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--repeats and --batch_size must be >= 1 and --warmup >= 0.")
    if min(args.input_size) < 1:
        parser.error(f"--input_size sides must be positive, got {args.input_size}.")
    return args


def _family_options(families: Sequence[str], items: Sequence[str]) -> Dict[str, dict]:
    """{family: {key: value}} of "[family:]key=value" strings."""
    options = {family: {} for family in families}
    for item in items:
        prefix, sep, rest = item.partition(":")
        if sep and "=" not in prefix:
            if prefix not in options:
                raise UsageError(f"--option {item!r} names family {prefix!r}, which is "
                                 f"not compared ({', '.join(families)}).")
            targets, item = (prefix,), rest
        else:
            targets = families
        override = parse_overrides([item])
        if "backbone" in override:
            raise UsageError("set the backbone with --backbone, not --option.")
        for family in targets:
            options[family].update(override)
    return options


def _check_families(families: Sequence[str]) -> None:
    """A UsageError for a family not in FAMILIES or not registered."""
    for family in families:
        if family not in FAMILIES:
            raise UsageError(f"unknown family {family!r}; compare runs "
                             f"{', '.join(FAMILIES)}.")
        try:
            get_meta_architecture(family)
        except ValueError:
            raise UsageError(f"family {family!r} is not registered (registered: "
                             f"{', '.join(meta_architecture_names())}).") from None
    if len(set(families)) != len(families):
        raise UsageError(f"--families names a family twice: {' '.join(families)}.")


def set_options(family: str, dataset, backbone: str, options: dict):
    """(architecture, post-processing) options set beyond `family`'s defaults:
    the worst-case `LOAD_OPTIONS` it has, then `options` (architecture)."""
    defaults = _config(family, dataset, backbone, options, {})
    architecture, postprocess = (
        {key: value for key, value in LOAD_OPTIONS[part].items()
         if key in getattr(defaults, part)} for part in ("architecture", "postprocess"))
    return {**architecture, **options}, postprocess


def _config(family, dataset, backbone, architecture, postprocess):
    return make_config(family, dataset, output_stride=OUTPUT_STRIDE, crop_size=None,
                       pixel_mean=builder.DEFAULT_PIXEL_MEAN,
                       pixel_std=builder.DEFAULT_PIXEL_STD,
                       architecture=dict(architecture, backbone=backbone),
                       postprocess=postprocess)


def model_configs(args: argparse.Namespace) -> dict:
    """{family: its complete `ModelConfig`} of the flags, every one validated
    (a UsageError or ValueError names the problem) before anything is built."""
    _check_families(args.families)
    dataset = resolve_dataset(args.dataset)
    configs = {}
    for family, options in _family_options(args.families, args.option).items():
        configs[family] = _config(family, dataset, args.backbone,
                                  *set_options(family, dataset, args.backbone, options))
    return configs


def options_changed(config) -> dict:
    """The architecture and post-processing options of `config` that differ
    from its family's defaults (the backbone aside)."""
    defaults = _config(config.meta_architecture, config.dataset,
                       config.architecture["backbone"], {}, {})
    return {part: {key: value for key, value in getattr(config, part).items()
                   if getattr(defaults, part).get(key) != value}
            for part in ("architecture", "postprocess")}


class _Family:
    """One family's model, its counts and its two timed functions."""

    def __init__(self, config, requested_size, batch_size, warmup):
        self.config = config
        family = get_meta_architecture(config.meta_architecture)
        model = builder.model_from_config(config, pretrained=False)
        self.size = tuple(int(family.padded_size(side, config)) for side in requested_size)
        self.params = profile.count_model_params(model)
        self.madds = profile.count_madds(model, (*self.size, 3))
        images = tf.tile(random_images(self.size), [batch_size, 1, 1, 1])
        self.forward = Timed(Predictor(model).raw_predictions, images, warmup)
        raw = dict(self.forward.function(images))
        self.postprocess = Timed(
            lambda outputs: family.postprocess(outputs, config, config.postprocess),
            raw, warmup)
        predictions = self.postprocess.function(raw)
        self.instances = _count(predictions[common.INSTANCE_CLASSES]
                                != config.dataset.ignore_label)
        self.detections = (_count(raw[common.DETECTION_VALID])
                           if common.DETECTION_VALID in raw else None)

    def record(self, baseline_forward_ms: Optional[float]) -> dict:
        forward_ms = statistics.median(self.forward.times_ms)
        return {
            "input_size": list(self.size),
            "params": self.params,
            "params_m": round(self.params / 1e6, 2),
            "madds": self.madds,
            "madds_b": round(self.madds / 1e9, 2),
            "forward": self.forward.latency(),
            "postprocess": self.postprocess.latency(),
            "forward_ratio": (None if baseline_forward_ms is None
                              else round(forward_ms / baseline_forward_ms, 3)),
            "valid_detections": self.detections,
            "instances": self.instances,
            "options": options_changed(self.config),
        }


def _count(mask: tf.Tensor) -> int:
    return int(tf.reduce_sum(tf.cast(mask, tf.int32)))


def run(args: argparse.Namespace, configs: dict) -> dict:
    """The report of one comparison of `model_configs(args)`."""
    start = time.perf_counter()
    families = {name: _Family(config, args.input_size, args.batch_size, args.warmup)
                for name, config in configs.items()}
    # Every function once per repeat: all see the same machine load.
    for _ in range(args.repeats):
        for family in families.values():
            family.forward.times_ms.append(family.forward())
            family.postprocess.times_ms.append(family.postprocess())
    baseline = (statistics.median(families[BASELINE].forward.times_ms)
                if BASELINE in families else None)
    report = {
        "benchmark": "compare",
        "backbone": args.backbone,
        "dataset": next(iter(configs.values())).dataset.name,
        "output_stride": OUTPUT_STRIDE,
        "requested_size": list(args.input_size),
        "batch_size": args.batch_size,
        "pretrained": False,
        "jit_compile": False,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "baseline": BASELINE,
        "families": {name: family.record(baseline) for name, family in families.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    keras.backend.clear_session()
    return report


def markdown_table(report: dict) -> str:
    """The report's families as a Markdown table, under a line saying what ran."""
    batch = f", batch {report['batch_size']}" if report["batch_size"] > 1 else ""
    lines = [f"{report['backbone']}, {report['dataset']}, requested "
             f"{'x'.join(map(str, report['requested_size']))}{batch}: medians of "
             f"{report['repeats']} runs after {report['warmup']} warm-up",
             "",
             "| family | input | params (M) | multiply-adds (B) | forward (ms) "
             f"| post-processing (ms) | forward / {report['baseline']} |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, record in report["families"].items():
        ratio = "-" if record["forward_ratio"] is None else f"{record['forward_ratio']:.3f}"
        lines.append(f"| {name} | {'x'.join(map(str, record['input_size']))} "
                     f"| {record['params_m']:.2f} | {record['madds_b']:.2f} "
                     f"| {record['forward']['median_ms']:.1f} "
                     f"| {record['postprocess']['median_ms']:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    try:
        configs = model_configs(args)
    except (UsageError, UnknownDatasetError, ValueError) as error:
        message = error.args[0] if error.args else str(error)
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
        return 2
    report = run(args, configs)
    print(json.dumps(report, indent=2))
    print(markdown_table(report), file=sys.stderr)
    return 0
