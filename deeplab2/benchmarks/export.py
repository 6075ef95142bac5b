"""Benchmark: the export formats side by side, latency and file size, in one run.

Builds a random-weight Panoptic-DeepLab (or loads `--model_dir`), then writes
and times, on the same random image of `--input_size`:
- `tf_network`: the network alone in TensorFlow (the function every file
  format converts, deeplab2.export.network: Panoptic-DeepLab's heads at
  stride 4, before the upsampling), the baseline of the ratios;
- `saved_model`: the exported SavedModel reloaded, uint8 image in, panoptic
  maps out (padding, network, post-processing);
- `tflite_float32`, `tflite_float16`, `tflite_int8`: the network in LiteRT
  with `--threads` threads (XNNPACK, LiteRT's default CPU delegate); int8
  calibrated on `--calibration_pattern` or, without it, on random images
  (the latency does not depend on the calibration's values);
- `onnx`: the network in ONNX Runtime with `--threads` threads (TensorFlow
  runs with its default, a thread per core: set in-process, its thread
  count could not change once TensorFlow started);
- `host_postprocess`: deeplab2.export.tflite_postprocess on the network's
  raw outputs (upsampling and post-processing), what a file format adds to
  its network's time for maps.

Prints one JSON object: per format the median and min latency in ms over
`--repeats` runs after `--warmup`, the bytes on disk and the latency ratio
to `tf_network` and to `saved_model` (> 1: faster) and the size ratio to
the SavedModel. Needs the `export` extra.

  python scripts/benchmark.py export --backbone mobilenet_v3_small --input_size 513 1025
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.export import calibration, onnx, runtimes, tflite, tflite_postprocess
from deeplab2.export.network import NetworkInfo, check_input_size, network_function
from deeplab2.export.saved_model import export_saved_model
from deeplab2.inference import Predictor
from deeplab2.model import build_model
from deeplab2.model.model_dir import restore_model_dir

CALIBRATION_IMAGES = 8
FORMATS = ("tf_network", "saved_model", "tflite_float32", "tflite_float16", "tflite_int8",
           "onnx", "host_postprocess")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py export",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v3_small",
                        help="backbone of the random-weight model (without --model_dir)")
    parser.add_argument("--dataset", default="cityscapes")
    parser.add_argument("--model_dir", default=None,
                        help="a trained model directory instead of random weights")
    parser.add_argument("--input_size", type=int, nargs=2, default=(513, 1025),
                        metavar=("HEIGHT", "WIDTH"), help="a size the model takes")
    parser.add_argument("--calibration_pattern", default=None,
                        help="TFRecords calibrating int8 (default: random images)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS),
                        choices=list(FORMATS))
    parser.add_argument("--threads", type=int, default=2,
                        help="threads of LiteRT and ONNX Runtime")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _time(call: Callable[[], object], args: argparse.Namespace) -> Dict[str, float]:
    for _ in range(args.warmup):
        call()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2)}


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def _model(args: argparse.Namespace):
    if args.model_dir:
        return restore_model_dir(args.model_dir)[0]
    return build_model(dataset=args.dataset, backbone=args.backbone)


def _calibration(args, model, input_size, rng):
    if args.calibration_pattern:
        return calibration.calibration_images(args.calibration_pattern, model, input_size,
                                              CALIBRATION_IMAGES)
    images = [rng.uniform(0, 255, (1, *input_size, 3)).astype(np.float32)
              for _ in range(CALIBRATION_IMAGES)]
    return lambda: iter(images)


def write_network_file(name: str, model, input_size, directory: str,
                       calibration_images: Optional[Callable] = None) -> str:
    """Exports `model` as the file format `name` ("onnx" or "tflite_" + a
    quantization) into `directory`; returns its path. `calibration_images`
    (deeplab2.export.calibration) calibrate "tflite_int8"."""
    if name == "onnx":
        path = os.path.join(directory, "model.onnx")
        onnx.export_onnx(model, path, input_size)
        return path
    quantization = name.split("_")[1]
    path = os.path.join(directory, f"model_{quantization}.tflite")
    tflite.export_tflite(model, path, input_size, quantization,
                         calibration_images if quantization == "int8" else None)
    return path


def run(args: argparse.Namespace) -> Dict[str, object]:
    """Exports and times every format; returns the JSON-ready results."""
    rng = np.random.default_rng(args.seed)
    model = _model(args)
    input_size = check_input_size(model.model_config, args.input_size)
    image = rng.integers(0, 256, (*input_size, 3), dtype=np.uint8)
    network_input = image[None].astype(np.float32)
    network = network_function(model, input_size)
    raw = {key: value.numpy() for key, value in network(network_input).items()}
    results: Dict[str, Dict] = {}
    with tempfile.TemporaryDirectory() as directory:
        for name in args.formats:
            if name == "tf_network":
                results[name] = _time(lambda: network(network_input), args)
            elif name == "saved_model":
                path = os.path.join(directory, "saved_model")
                export_saved_model(Predictor(model), path)
                loaded = tf.saved_model.load(path)
                results[name] = dict(
                    _time(lambda: loaded.serve(image)[common.PANOPTIC].numpy(), args),
                    bytes=_size(path))
            elif name == "host_postprocess":
                info = NetworkInfo(
                    model.model_config, input_size,
                    {key: value.shape[1:] for key, value in raw.items()}, "tflite")
                results[name] = _time(
                    lambda: tflite_postprocess.postprocess(raw, info, input_size), args)
            else:
                images = (_calibration(args, model, input_size, rng)
                          if name == "tflite_int8" else None)
                path = write_network_file(name, model, input_size, directory, images)
                exported = runtimes.open_network(path, num_threads=args.threads)
                results[name] = dict(_time(lambda: exported(network_input), args),
                                     bytes=_size(path))
    for baseline in ("tf_network", "saved_model"):
        if baseline not in results:
            continue
        for name, result in results.items():
            if name not in (baseline, "host_postprocess"):
                result[f"speedup_vs_{baseline}"] = round(
                    results[baseline]["median_ms"] / result["median_ms"], 2)
    if "saved_model" in results:
        for name, result in results.items():
            if "bytes" in result and name != "saved_model":
                result["size_vs_saved_model"] = round(
                    result["bytes"] / results["saved_model"]["bytes"], 3)
    return {"benchmark": "export", "model": args.model_dir or args.backbone,
            "dataset": model.model_config.dataset.name, "params": model.count_params(),
            "input_size": list(input_size),
            "threads": args.threads, "repeats": args.repeats, "formats": results}


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
