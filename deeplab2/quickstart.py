"""The quickstart: the library's main path on the built-in synthetic dataset.

`python -m deeplab2.quickstart` generates the synthetic scenes, converts them to
sharded TFRecords (reused when already there), prints a summary of the data,
renders pictures of the ground truth, trains a small model of the `--model`
family (Panoptic-DeepLab with deeplab2/configs/synthetic/quickstart.gin,
Panoptic FPN with synthetic/panoptic_fpn_quickstart.gin, UPSNet with
synthetic/upsnet_quickstart.gin or Seamless with synthetic/seamless_quickstart.gin),
evaluates it on the val split (PQ / SQ / RQ, PQ-dagger, mIoU, mask AP, box AP
for the top-down families, prediction pictures) and exports it as a SavedModel. Outputs go to `--data_dir` and
`--output_dir`; a finished training run is reused.
"""
import collections
import json
import os
import sys
from typing import Dict, List, Optional

from absl import app, flags

from deeplab2 import common
from deeplab2.data.dataset_info import get_dataset_info

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "data/synthetic", "Where the synthetic TFRecords go.")
flags.DEFINE_enum("model", "panoptic_deeplab", ["panoptic_deeplab", "panoptic_fpn", "upsnet", "seamless"],
                  "The model family trained.")
flags.DEFINE_string("output_dir", None, "Where pictures and results go (default: "
                    "runs/quickstart, or runs/quickstart_<model> for another --model).")
flags.DEFINE_integer("num_train", 400, "Synthetic training scenes.")
flags.DEFINE_integer("num_val", 50, "Synthetic validation scenes.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic scenes.")
flags.DEFINE_integer("num_samples", 4, "Validation examples rendered as pictures.")
flags.DEFINE_string("gin_config", None,
                    "Gin config of the quickstart model and training (a path, or a "
                    "name under deeplab2/configs; default: the --model's).")
flags.DEFINE_multi_string("gin_bindings", [], "Extra Gin bindings.")

SPLITS = ("train", "val")
# --model: (Gin config, default output folder).
MODELS = {
    "panoptic_deeplab": ("synthetic/quickstart.gin", "runs/quickstart"),
    "panoptic_fpn": ("synthetic/panoptic_fpn_quickstart.gin", "runs/quickstart_panoptic_fpn"),
    "upsnet": ("synthetic/upsnet_quickstart.gin", "runs/quickstart_upsnet"),
    "seamless": ("synthetic/seamless_quickstart.gin", "runs/quickstart_seamless"),
}


def _summary_path(data_dir: str, split: str) -> str:
    return os.path.join(data_dir, f"{split}-summary.json")


def prepare_data(data_dir: str, num_train: int, num_val: int, seed: int) -> Dict[str, dict]:
    """Converts the synthetic dataset unless a complete one of that size exists."""
    from deeplab2.data.converters.synthetic import convert_synthetic

    wanted = {"train": num_train, "val": num_val}
    summaries = {}
    for split in SPLITS:
        path = _summary_path(data_dir, split)
        if os.path.exists(path):
            with open(path) as f:
                summaries[split] = json.load(f)
    reusable = (set(summaries) == set(SPLITS)
                and all(summaries[s]["num_images"] == wanted[s] for s in SPLITS)
                and all(summaries[s].get("seed") == seed for s in SPLITS))
    if reusable:
        print(f"Reusing the synthetic dataset in {data_dir}.")
        return summaries
    print(f"Generating and converting {num_train} + {num_val} synthetic scenes "
          f"into {data_dir} ...", flush=True)
    convert_synthetic(data_dir, num_train=num_train, num_val=num_val, seed=seed)
    for split in SPLITS:
        with open(_summary_path(data_dir, split)) as f:
            summaries[split] = json.load(f)
    return summaries


def class_statistics(file_pattern: str) -> Dict[str, collections.Counter]:
    """Counts segments and pixels per class name in the records of a split."""
    from deeplab2.vis.records import read_examples

    info = get_dataset_info("synthetic")
    segments, pixels = collections.Counter(), collections.Counter()
    for example in read_examples(file_pattern):
        for segment_id in example[common.SEGMENT_IDS]:
            cls = int(segment_id) // info.label_divisor
            if cls != info.ignore_label:
                segments[info.class_names[cls]] += 1
        classes = example[common.PANOPTIC_LABEL] // info.label_divisor
        for cls, count in zip(*_unique_counts(classes)):
            name = "ignore" if cls == info.ignore_label else info.class_names[cls]
            pixels[name] += count
    return {"segments": segments, "pixels": pixels}


def _unique_counts(values):
    import numpy as np

    unique, counts = np.unique(values, return_counts=True)
    return unique.tolist(), counts.tolist()


def render_samples(file_pattern: str, output_dir: str, num_samples: int) -> List[str]:
    """Writes pictures of the first validation examples; returns their paths."""
    from deeplab2.vis.records import read_examples, write_pictures

    return write_pictures(read_examples(file_pattern), get_dataset_info("synthetic"),
                          os.path.join(output_dir, "ground_truth"), num_samples)


def print_data_summary(summaries: Dict[str, dict], stats: Dict[str, collections.Counter]):
    for split in SPLITS:
        s = summaries[split]
        ratio = s["raw_label_bytes"] / max(s["label_bytes"], 1)
        print(f"  {split:5s}: {s['num_images']} images, {s['num_segments']} segments, "
              f"{s['num_bytes'] / 1e6:.1f} MB in {s['num_shards']} shard(s); "
              f"labels {ratio:.0f}x smaller than raw int32")
    total = sum(stats["pixels"].values())
    print("  val classes (segments, share of pixels):")
    for name in get_dataset_info("synthetic").class_names + ("ignore",):
        print(f"    {name:10s} {stats['segments'].get(name, 0):5d} "
              f"{100 * stats['pixels'].get(name, 0) / max(total, 1):5.1f}%")


def train_and_evaluate(data_dir: str, model_dir: str, gin_config: str,
                       bindings: List[str]) -> dict:
    """Trains (or resumes) the quickstart model, then evaluates it on val."""
    import time

    from deeplab2.training import runner
    from deeplab2.training.config import parse_gin

    parse_gin([gin_config], [
        f"Trainer.train_file_pattern = '{data_dir}/train-*.tfrecord'",
        f"Evaluator.file_pattern = '{data_dir}/val-*.tfrecord'"] + list(bindings))
    start = time.monotonic()
    result = runner.run("train_and_eval", model_dir)
    print(f"Training and evaluation took {time.monotonic() - start:.0f} s.")
    return result


def main(argv: Optional[List[str]] = None) -> None:
    del argv
    from deeplab2.utils.console import configure_logging

    configure_logging()
    gin_config, output_dir = MODELS[FLAGS.model]
    gin_config = FLAGS.gin_config or gin_config
    output_dir = FLAGS.output_dir or output_dir
    summaries = prepare_data(FLAGS.data_dir, FLAGS.num_train, FLAGS.num_val, FLAGS.seed)
    val_pattern = os.path.join(FLAGS.data_dir, "val-*.tfrecord")
    print("Synthetic dataset:")
    print_data_summary(summaries, class_statistics(val_pattern))
    paths = render_samples(val_pattern, output_dir, FLAGS.num_samples)
    print(f"Ground-truth pictures: {', '.join(paths)}")
    model_dir = os.path.join(output_dir, "model")
    result = train_and_evaluate(FLAGS.data_dir, model_dir, gin_config, FLAGS.gin_bindings)
    print(f"Synthetic val: {summary_line(result)}")
    print(f"Metrics, prediction pictures and TensorBoard logs: {model_dir}/eval, "
          f"{model_dir}/train")
    export_dir = os.path.join(output_dir, "saved_model")
    export_model(model_dir, export_dir)
    boxes = ", boxes" if FLAGS.model != "panoptic_deeplab" else ""
    print(f"Exported SavedModel (uint8 image of any size -> panoptic, semantic, instance "
          f"maps, instance scores{boxes}): {export_dir}")


def summary_line(result: dict) -> str:
    """PQ / SQ / RQ, PQ-dagger (when computed), mIoU, and the mask and box AP the
    evaluation computed."""
    line = (f"PQ {100 * result['All']['pq']:.1f}  SQ {100 * result['All']['sq']:.1f}  "
            f"RQ {100 * result['All']['rq']:.1f}")
    if result.get("pq_dagger"):
        line += f"  PQ-dagger {100 * result['pq_dagger']['All']:.1f}"
    line += f"  mIoU {100 * result['miou']:.1f}"
    for key, name in (("AP", "mask AP"), ("box_AP", "box AP")):
        if result.get(key) is not None:
            line += f"  {name} {100 * result[key]:.1f}"
    return line


def export_model(model_dir: str, export_dir: str) -> None:
    """Exports the model directory's latest checkpoint."""
    from deeplab2 import export
    from deeplab2.inference import load_predictor

    export.export_saved_model(load_predictor(model_dir)[0], export_dir)


def run() -> None:
    """Console-script entry point."""
    app.run(main, argv=sys.argv)


if __name__ == "__main__":
    run()
