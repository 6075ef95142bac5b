"""Benchmark: what each export format costs in accuracy, on a split of a trained model.

Exports the model of `--model_dir` at `--input_size` as TFLite float32,
float16 and int8 (calibrated on `--calibration_steps` images of
`--calibration_pattern`) and as ONNX, then runs every format and the model
itself (its in-process predictions, which the SavedModel reproduces exactly)
over the images of `--pattern`, and reports per format:

- `raw_error`: the largest difference of the network's raw outputs from the
  Keras network's over the split, relative to each output's largest
  magnitude (the worst output), and `raw_error_per_image`, the largest of
  the same ratio computed image by image;
- `same_maps`: images whose panoptic map equals the model's exactly;
- `pq`, `pq_drop` (model minus format, in points), mIoU;
- `bytes` and the median network latency in ms (`--threads` threads).

  python scripts/benchmark.py export_parity --model_dir runs/quickstart/model \\
      --pattern 'data/synthetic/val-*.tfrecord' \\
      --calibration_pattern 'data/synthetic/train-*.tfrecord'

Prints one JSON object. Needs the `export` extra.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.benchmarks.export import write_network_file
from deeplab2.data import records
from deeplab2.data.tfrecord import decode_example
from deeplab2.evaluation.dataset_evaluation import SplitMetrics
from deeplab2.export import calibration, runtimes, tflite_postprocess
from deeplab2.export.network import check_input_size, network_function
from deeplab2.inference import Predictor
from deeplab2.model.model_dir import restore_model_dir
from deeplab2.utils.progress import Progress

FORMATS = ("tflite_float32", "tflite_float16", "tflite_int8", "onnx")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py export_parity",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="a trained model directory")
    parser.add_argument("--pattern", required=True, help="TFRecords of the evaluated split")
    parser.add_argument("--calibration_pattern", default=None,
                        help="TFRecords calibrating int8, not the evaluated split "
                             "(required with tflite_int8)")
    parser.add_argument("--calibration_steps", type=int, default=100)
    parser.add_argument("--input_size", type=int, nargs=2, default=None,
                        metavar=("HEIGHT", "WIDTH"),
                        help="the files' input size (default: the training crop)")
    parser.add_argument("--max_images", type=int, default=None,
                        help="only the first images of --pattern (default: all)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of LiteRT and ONNX Runtime")
    args = parser.parse_args(argv)
    if "tflite_int8" in args.formats and not args.calibration_pattern:
        parser.error("--calibration_pattern is required to calibrate tflite_int8.")
    if args.max_images is not None and args.max_images < 1:
        parser.error(f"--max_images must be >= 1, got {args.max_images}.")
    return args


class _Split:
    """The model's reference on the split: raw network outputs of each padded
    image, its predictions, and the PQ they score."""

    def __init__(self, model, input_size, pattern: str, max_images: Optional[int]):
        dataset = tf.data.TFRecordDataset(records.list_files(pattern, "pattern"))
        if max_images is not None:
            dataset = dataset.take(max_images)
        self.examples = [decode_example(serialized) for serialized in dataset]
        if not self.examples:
            raise SystemExit(f"error: --pattern {pattern!r}: the records hold no image.")
        self.info = model.model_config.dataset
        predictor = Predictor(model, fit_size=input_size)
        network = network_function(model, input_size)
        self.inputs = [predictor.prepare_image(example[common.IMAGE])[0].numpy()
                       for example in self.examples]
        self.raw = [{k: v.numpy() for k, v in network(images).items()}
                    for images in self.inputs]
        self.maps = [predictor.predict_image(example[common.IMAGE])[common.PANOPTIC].numpy()
                     for example in self.examples]
        self.scores = self.score(self.maps)

    def score(self, maps) -> Dict[str, float]:
        metrics = SplitMetrics(self.info, compute_ap=False)
        for index, (example, panoptic) in enumerate(zip(self.examples, maps)):
            metrics.score(index, str(index), example[common.PANOPTIC_LABEL].numpy(), panoptic)
        result = metrics.result()
        return {"pq": round(100 * result["All"]["pq"], 2),
                "miou": round(100 * result["miou"], 2)}

    def compare(self, exported: runtimes.ExportedNetwork) -> Dict[str, object]:
        raw, maps, times = [], [], []
        for images, example in zip(self.inputs, self.examples):
            start = time.perf_counter()
            raw.append(exported(images))
            times.append((time.perf_counter() - start) * 1e3)
            # `exported.predict_image` of the image, without running the network again.
            maps.append(tflite_postprocess.postprocess(
                raw[-1], exported.info, example[common.IMAGE].shape[:2])[common.PANOPTIC])
        # An output that is zero everywhere counts its differences as they are.
        def largest(values):
            return max(float(np.abs(values).max()), np.finfo(np.float32).tiny)

        split_error = max(max(np.abs(r[key] - e[key]).max() for r, e in zip(self.raw, raw))
                          / max(largest(r[key]) for r in self.raw) for key in self.raw[0])
        image_error = max(np.abs(r[key] - e[key]).max() / largest(r[key])
                          for r, e in zip(self.raw, raw) for key in r)
        scores = self.score(maps)
        return {"raw_error": float(f"{split_error:.2g}"),
                "raw_error_per_image": float(f"{image_error:.2g}"),
                "same_maps": sum(np.array_equal(a, b) for a, b in zip(maps, self.maps)),
                **scores, "pq_drop": round(self.scores["pq"] - scores["pq"], 2),
                "network_ms": round(statistics.median(times), 2)}


def run(args: argparse.Namespace) -> Dict[str, object]:
    model = restore_model_dir(args.model_dir)[0]
    config = model.model_config
    if args.input_size is None and config.crop_size is None:
        raise SystemExit("error: --input_size is required: the model has no training crop.")
    input_size = check_input_size(config, args.input_size or config.crop_size)
    split = _Split(model, input_size, args.pattern, args.max_images)
    results = {}
    progress = Progress(len(args.formats), desc="formats", unit="format")
    with tempfile.TemporaryDirectory() as directory:
        for name in args.formats:
            images = (calibration.calibration_images(args.calibration_pattern, model,
                                                     input_size, args.calibration_steps)
                      if name == "tflite_int8" else None)
            path = write_network_file(name, model, input_size, directory, images)
            results[name] = dict(split.compare(runtimes.open_network(path, args.threads)),
                                 bytes=os.path.getsize(path))
            progress.update()
    progress.close()
    return {"benchmark": "export_parity", "model_dir": args.model_dir,
            "pattern": args.pattern, "images": len(split.examples),
            "input_size": list(input_size), "model": split.scores, "formats": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
