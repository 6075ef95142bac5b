"""Benchmark: what running the network in bfloat16 changes, against float32, for a trained model.

Loads the model of `--model_dir` twice, computing in float32 and in bfloat16
(`deeplab2.load_model(compute_dtype=...)`: Keras mixed precision, the same
float32 weights; post-processing stays float32), predicts every image of
`--pattern` (TFRecords with labels) and of `--image` (photos, no labels) with
both, and reports:

- per labelled split: PQ and mIoU of each, `pq_change` (bfloat16 minus
  float32, in points);
- for all images: `semantic_agreement`, the fraction of pixels with the same
  semantic class; `same_panoptic_maps`, images whose panoptic maps are equal;
  `pq_against_float32`, the PQ of the bfloat16 maps taking the float32 maps as
  ground truth (100 = the same segments);
- the median latency of the network (`network_outputs`, batch 1, graph mode)
  in each precision at the size of the first image, each timed in its own
  block after warm-up, and the speed-up;
- whether the CPU has native bfloat16 instructions (AVX512-BF16 or AMX).

  python scripts/benchmark.py bfloat16 --model_dir runs/quickstart/model \\
      --pattern 'data/synthetic/val-*.tfrecord'

Prints one JSON object.
"""
import argparse
import json
import statistics
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab2 import common
from deeplab2.data import records
from deeplab2.data.tfrecord import decode_example
from deeplab2.evaluation.dataset_evaluation import SplitMetrics
from deeplab2.inference import Predictor
from deeplab2.model.model_dir import ModelDirError, load_model
from deeplab2.utils.cpu_features import native_bfloat16
from deeplab2.utils.progress import Progress

DTYPES = ("float32", "bfloat16")


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py bfloat16",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="a trained model directory")
    parser.add_argument("--pattern", default=None, help="TFRecords of a labelled split")
    parser.add_argument("--image", nargs="*", default=[], help="photos (no labels)")
    parser.add_argument("--fit_size", type=int, nargs=2, default=None,
                        metavar=("HEIGHT", "WIDTH"),
                        help="shrink larger images to fit and pad to this size, as "
                             "deeplab2 evaluates (default: each image at its own size)")
    parser.add_argument("--max_images", type=int, default=None,
                        help="only the first records of --pattern")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.pattern is None and not args.image:
        parser.error("give --pattern, --image or both.")
    if args.max_images is not None and args.max_images < 1:
        parser.error(f"--max_images must be >= 1, got {args.max_images}.")
    return args


def _examples(args: argparse.Namespace) -> List[Dict[str, np.ndarray]]:
    """{"image", "label" (None for photos), "name"} of every image."""
    examples = []
    if args.pattern is not None:
        dataset = tf.data.TFRecordDataset(records.list_files(args.pattern, "pattern"))
        if args.max_images is not None:
            dataset = dataset.take(args.max_images)
        for index, serialized in enumerate(dataset):
            example = decode_example(serialized)
            examples.append({"image": example[common.IMAGE].numpy(),
                             "label": example[common.PANOPTIC_LABEL].numpy(),
                             "name": f"record {index}"})
        if not examples:
            raise SystemExit(f"error: --pattern {args.pattern!r}: the records hold no image.")
    for path in args.image:
        try:
            image = np.asarray(Image.open(path).convert("RGB"))
        except OSError as error:
            raise SystemExit(f"error: --image {path}: not a readable image ({error}).")
        examples.append({"image": image, "label": None, "name": path})
    return examples


def _scores(info, pairs) -> Dict[str, float]:
    """PQ and mIoU (points) of (ground truth, prediction) panoptic maps."""
    metrics = SplitMetrics(info, compute_ap=False)
    for index, (truth, predicted) in enumerate(pairs):
        metrics.score(index, str(index), truth, predicted)
    result = metrics.result()
    return {"pq": round(100 * result["All"]["pq"], 2), "miou": round(100 * result["miou"], 2)}


def _network_ms(predictor: Predictor, image: np.ndarray, warmup: int, repeats: int) -> float:
    images, _ = predictor.prepare_image(tf.constant(image))
    network = tf.function(lambda x: predictor.network(x))
    for _ in range(warmup + 1):
        [value.numpy() for value in network(images).values()]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        [value.numpy() for value in network(images).values()]
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run(args: argparse.Namespace) -> Dict[str, object]:
    try:
        models = {dtype: load_model(args.model_dir, compute_dtype=dtype) for dtype in DTYPES}
    except ModelDirError as error:
        raise SystemExit(f"error: {error}")
    predictors = {dtype: Predictor(model, fit_size=args.fit_size)
                  for dtype, model in models.items()}
    info = predictors["float32"].info
    examples = _examples(args)
    predict = {dtype: tf.function(predictor.predict_image)
               for dtype, predictor in predictors.items()}
    maps = {dtype: [] for dtype in DTYPES}
    progress = Progress(len(examples), desc="images", unit="image")
    for example in examples:
        for dtype in DTYPES:
            predictions = predict[dtype](tf.constant(example["image"]))
            maps[dtype].append({key: predictions[key].numpy()
                                for key in (common.SEMANTIC, common.PANOPTIC)})
        progress.update()
    progress.close()
    agreement = (sum(int((a[common.SEMANTIC] == b[common.SEMANTIC]).sum())
                     for a, b in zip(maps["float32"], maps["bfloat16"]))
                 / sum(m[common.SEMANTIC].size for m in maps["float32"]))
    report = {
        "benchmark": "bfloat16", "model_dir": args.model_dir,
        "native_bfloat16": native_bfloat16(), "images": len(examples),
        "semantic_agreement": round(agreement, 5),
        "same_panoptic_maps": sum(np.array_equal(a[common.PANOPTIC], b[common.PANOPTIC])
                                  for a, b in zip(maps["float32"], maps["bfloat16"])),
        "pq_against_float32": _scores(info, [
            (a[common.PANOPTIC], b[common.PANOPTIC])
            for a, b in zip(maps["float32"], maps["bfloat16"])])["pq"],
    }
    labelled = [i for i, example in enumerate(examples) if example["label"] is not None]
    if labelled:
        split = {dtype: _scores(info, [(examples[i]["label"], maps[dtype][i][common.PANOPTIC])
                                       for i in labelled]) for dtype in DTYPES}
        report["split"] = dict(split, pattern=args.pattern, images=len(labelled),
                               pq_change=round(split["bfloat16"]["pq"]
                                               - split["float32"]["pq"], 2))
    latency = {dtype: _network_ms(predictors[dtype], examples[0]["image"], args.warmup,
                                  args.repeats) for dtype in DTYPES}
    report["network_ms"] = {dtype: round(ms, 1) for dtype, ms in latency.items()}
    report["network_input"] = list(predictors["float32"].prepare_image(
        tf.constant(examples[0]["image"]))[0].shape[1:3])
    report["speedup"] = round(latency["float32"] / latency["bfloat16"], 2)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    print(json.dumps(run(_parse(argv))))
    return 0
