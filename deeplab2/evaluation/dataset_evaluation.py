"""Evaluates predictions over a dataset: PQ / PQ-dagger / mIoU, mask AP, pictures.

`evaluate_dataset` takes any function from an image batch to post-processed
predictions (deeplab2.inference.Predictor, an exported model, ...) and the
batches of the evaluation pipeline, so it serves models trained anywhere.
"""
import os
from typing import Callable, Dict, Iterable, Optional

import numpy as np

from deeplab2 import common
from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.evaluation.evaluator import PanopticEvaluator
from deeplab2.evaluation.instance_ap import MaskAP
from deeplab2.utils.progress import Progress


def _scores(predictions: Dict[str, np.ndarray], index: int, void_id: int) -> Dict[int, float]:
    """{predicted thing panoptic id: score} of one image."""
    ids = predictions[common.INSTANCE_PANOPTIC_IDS][index]
    scores = predictions[common.INSTANCE_SCORES][index]
    return {int(i): float(s) for i, s in zip(ids, scores) if i != void_id}


def render_prediction(batch: Dict, predictions: Dict, index: int, info: DatasetInfo,
                      height: Optional[int] = None, width: Optional[int] = None) -> np.ndarray:
    """Panels of image `index` of a batch: prediction and ground truth over the
    image, semantic map, center heatmap, offsets; cropped to height x width
    (default: the image's original size)."""
    from deeplab2.vis import render_panels

    if height is None:
        height = int(np.asarray(batch[common.IMAGE_HEIGHT])[index])
        width = int(np.asarray(batch[common.IMAGE_WIDTH])[index])

    def crop(value):
        return None if value is None else np.asarray(value)[index, :height, :width]

    return render_panels(
        crop(batch[common.IMAGE]).astype(np.uint8), dataset_info=info,
        panoptic=crop(predictions.get(common.PANOPTIC)),
        semantic=crop(predictions.get(common.SEMANTIC)),
        center_heatmap=crop(predictions.get(common.CENTER_HEATMAP)),
        offset=crop(predictions.get(common.OFFSET)),
        gt_panoptic=crop(batch[common.PANOPTIC_LABEL]))


def evaluate_dataset(predict: Callable[[Dict], Dict], batches: Iterable[Dict],
                     info: DatasetInfo, *, compute_ap: bool = True,
                     picture_dir: Optional[str] = None, num_pictures: int = 0,
                     num_images: Optional[int] = None) -> Dict:
    """Scores `predict` (padded evaluation batch -> post-processed predictions,
    e.g. `Predictor.batch_function()`) on `batches`.

    Predictions are cropped back to each image's original size before
    scoring. Returns the PQ/PQ-dagger/mIoU result of PanopticEvaluator plus
    `AP`, `AP50`, `AP75` when `compute_ap`. The first `num_pictures` images are
    drawn (prediction and ground truth) into `picture_dir`.
    """
    from deeplab2.vis import save_png

    evaluator = PanopticEvaluator(info)
    mask_ap = MaskAP(info.thing_ids) if compute_ap else None
    progress = Progress(num_images, desc="eval", unit="img")
    drawn = 0
    for batch in batches:
        predictions = {k: np.asarray(v) for k, v in predict(batch).items()}
        batch = {k: np.asarray(v) for k, v in batch.items()}
        for i in range(batch[common.IMAGE].shape[0]):
            height, width = int(batch[common.IMAGE_HEIGHT][i]), int(batch[common.IMAGE_WIDTH][i])
            gt = batch[common.PANOPTIC_LABEL][i, :height, :width]
            pred = predictions[common.PANOPTIC][i, :height, :width]
            image_id = batch[common.IMAGE_ID][i]
            image_id = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
            evaluator.update(gt, pred, image_id)
            if mask_ap is not None:
                mask_ap.update_panoptic(gt, pred, _scores(predictions, i,
                                                          info.ignore_panoptic_id), info)
            if picture_dir and drawn < num_pictures:
                save_png(os.path.join(picture_dir, f"{drawn:05d}_{image_id}.png"),
                         render_prediction(batch, predictions, i, info, height, width))
                drawn += 1
            progress.update()
    progress.close()
    result = evaluator.result()
    if mask_ap is not None:
        result.update(mask_ap.result())
    return result
