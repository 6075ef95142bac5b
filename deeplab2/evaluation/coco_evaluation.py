"""Scores predictions stored in COCO panoptic format against ground truth.

Like panopticapi's `pq_compute` (same PQ numbers; categories and `isthing`
from the ground-truth JSON; predictions for images absent from the ground
truth are ignored), plus PQ-dagger and mIoU (void pixels of the ground truth
excluded). Images are scored in worker threads when `num_workers` > 1: PNG
decoding and the numpy counting release the GIL, so threads scale like
processes (measured: 15.6 vs 17.8 ms/img with 2) without forking a process
that may hold TensorFlow's threads.
"""
import functools
import json
import os
from multiprocessing.pool import ThreadPool
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from deeplab2.evaluation import coco_format
from deeplab2.evaluation.coco_format import FormatError
from deeplab2.evaluation.evaluator import MetricSet, image_statistics
from deeplab2.evaluation.overlaps import SegmentError, image_overlaps
from deeplab2.evaluation.panoptic_quality import GROUPS, Category, PQStats
from deeplab2.utils.paths import UnsafePathError, path_inside
from deeplab2.utils.progress import Progress

Pair = Tuple[str, Mapping, str, Mapping]


def gt_categories(gt: Mapping, source: str) -> List[Category]:
    """The evaluated categories of a ground-truth JSON."""
    categories = gt.get("categories")
    if not categories:
        raise FormatError(f"{source} has no 'categories' list")
    result = []
    for category in categories:
        if "id" not in category or "isthing" not in category:
            raise FormatError(f"{source}: category {category} needs 'id' and "
                              "'isthing'")
        result.append(Category(category["id"], category.get("name", ""),
                               bool(category["isthing"])))
    return result


def _void(ids):
    return ids == coco_format.VOID_ID


def _score_pair(pair: Pair, categories: Mapping[int, int], gt_source: str,
                pred_source: str) -> Tuple[PQStats, np.ndarray]:
    """Statistics of one (gt png, gt annotation, pred png, pred annotation)."""
    gt_png, gt_annotation, pred_png, pred_annotation = pair
    gt = coco_format.json_segments(gt_annotation, categories, True, gt_source)
    pred = coco_format.json_segments(pred_annotation, categories, False,
                                     pred_source)
    try:
        overlaps = image_overlaps(
            coco_format.rgb_label_map(gt_png),
            coco_format.rgb_label_map(pred_png), lambda ids: (gt, _void(ids)),
            lambda ids: (pred, _void(ids)), str(gt_annotation["image_id"]))
    except FormatError:
        raise
    except SegmentError as e:
        raise FormatError(f"{e} (ground truth {gt_png}, prediction "
                          f"{pred_png})") from None
    return image_statistics(overlaps, len(categories))


def _by_image(data: Mapping, source: str) -> Dict:
    """{image id: annotation}; a repeated image id is an error, since it would
    score an image twice or hide one prediction behind another."""
    annotations = {}
    for annotation in data["annotations"]:
        image = annotation["image_id"]
        try:
            repeated = image in annotations
        except TypeError:  # unhashable: a list or an object
            raise FormatError(f"{source}: image_id {image!r} is not a number or a "
                              "string") from None
        if repeated:
            raise FormatError(f"{source}: image {image!r} has more than one annotation; "
                              "expected one per image")
        annotations[image] = annotation
    return annotations


def _pairs(gt: Mapping, gt_json: str, gt_dir: str, pred: Mapping, pred_json: str,
           pred_dir: str) -> List[Pair]:
    gt_annotations = _by_image(gt, gt_json)
    predictions = _by_image(pred, pred_json)
    pairs = []
    for image, annotation in gt_annotations.items():
        if image not in predictions:
            raise FormatError(f"no prediction for image {image} in {pred_json}")
        prediction = predictions[image]
        for data, source in ((annotation, gt_json), (prediction, pred_json)):
            if not isinstance(data["segments_info"], list):
                raise FormatError(f"{source}: segments_info of image {image!r} is "
                                  f"{data['segments_info']!r}; expected a list")
        try:
            pairs.append((path_inside(gt_dir, annotation["file_name"],
                                      f"{gt_json}: file_name of image {image!r}"),
                          annotation,
                          path_inside(pred_dir, prediction["file_name"],
                                      f"{pred_json}: file_name of image {image!r}"),
                          prediction))
        except UnsafePathError as e:
            raise FormatError(str(e)) from None
    return pairs


def evaluate_coco_panoptic(gt_json: str, gt_dir: str, pred_json: str,
                           pred_dir: str, num_workers: int = 1,
                           show_progress: bool = False) -> Dict:
    """Scores a folder of predicted COCO panoptic PNGs + JSON.

    Returns {'All', 'Things', 'Stuff': {pq, sq, rq, n}, 'pq_dagger',
    'miou', 'per_class', 'num_images'}, fractions in [0, 1] (None for an
    empty group). Raises FormatError naming the image and segment on
    malformed input.
    """
    gt = coco_format.load_json(gt_json)
    pred = coco_format.load_json(pred_json)
    categories = gt_categories(gt, gt_json)
    index = coco_format.category_index(gt["categories"])
    pairs = _pairs(gt, gt_json, gt_dir, pred, pred_json, pred_dir)
    metrics = MetricSet(categories)
    score = functools.partial(_score_pair, categories=index,
                              gt_source=gt_json, pred_source=pred_json)
    progress = Progress(len(pairs), "evaluate", "img") if show_progress else None
    pool = ThreadPool(num_workers) if num_workers > 1 and len(pairs) > 1 else None
    results = pool.imap(score, pairs) if pool else map(score, pairs)
    try:
        for stats, confusion in results:
            metrics.add_statistics(stats, confusion)
            if progress:
                progress.update()
    finally:
        if pool:
            pool.terminate()
            pool.join()
        if progress:
            progress.close()
    return metrics.result()


def _percent(value: Optional[float]) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def format_table(result: Mapping, per_class: bool = False) -> str:
    """A readable table of a result (percentages)."""
    lines = [f"{'':10s}| {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} {'PQ-dag':>6s} "
             f"{'N':>4s}", "-" * 41]
    for group in GROUPS:
        g = result[group]
        lines.append(f"{group:10s}| {_percent(g['pq'])} {_percent(g['sq'])} "
                     f"{_percent(g['rq'])} "
                     f"{_percent(result['pq_dagger'][group])} {g['n']:4d}")
    lines.append(f"mIoU {_percent(result['miou'])}  over "
                 f"{result.get('num_images', '?')} images")
    if per_class:
        lines.append("")
        lines.append(f"{'class':24s} {'PQ':>6s} {'SQ':>6s} {'RQ':>6s} "
                     f"{'PQ-dag':>6s} {'IoU':>6s}")
        for key, c in result["per_class"].items():
            if c["pq"] is None and c.get("iou") is None:
                continue
            name = f"{key} {c['name']}"[:24]
            lines.append(f"{name:24s} {_percent(c['pq'])} {_percent(c['sq'])} "
                         f"{_percent(c['rq'])} {_percent(c['pq_dagger'])} "
                         f"{_percent(c.get('iou'))}")
    return "\n".join(lines)


def write_json(result: Mapping, path: str) -> None:
    """Writes a result as JSON (per-class keys become strings)."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
