"""One picture of an example: image, labels and model outputs side by side."""
from typing import Optional

import numpy as np

from deeplab2.data.dataset_info import DatasetInfo
from deeplab2.vis.boxes import draw_boxes
from deeplab2.vis.colormaps import colorize_panoptic, colorize_semantic
from deeplab2.vis.fields import colorize_heatmap, colorize_offsets
from deeplab2.vis.layout import as_rgb, overlay, side_by_side


def render_panels(image, *, dataset_info: DatasetInfo,
                  panoptic=None, semantic=None, center_heatmap=None, offset=None,
                  gt_panoptic=None, boxes=None, box_ids=None, alpha: float = 0.5,
                  columns: Optional[int] = None) -> np.ndarray:
    """Renders the given maps of one HxW example as one titled RGB grid.

    Panels, in order, for the arguments given: the predicted panoptic map over
    the image, the ground-truth panoptic map over the image (the plain image
    when neither is given), the semantic map, the center heatmap and the
    offsets. `semantic` may be a prediction or a label (`panoptic //
    label_divisor`); the heatmap is HxW or HxWx1, the offsets HxWx2 (y, x).
    `boxes` ([N, 4] (x0, y0, x1, y1), see `draw_boxes`) are outlined on the
    prediction, each in the color of its panoptic id in `box_ids` [N], so a
    box matches its instance.
    """
    image = as_rgb(image)
    panels = []
    if (boxes is None) != (box_ids is None):
        raise ValueError("boxes and box_ids must be given together")
    if boxes is not None and panoptic is None:
        raise ValueError("boxes are drawn on the prediction: give its panoptic map")
    if panoptic is not None:
        prediction = overlay(image, colorize_panoptic(panoptic, dataset_info), alpha)
        if boxes is not None:
            ids = np.asarray(box_ids, np.int64).reshape(1, -1)
            colors = colorize_panoptic(ids, dataset_info, boundaries=False)[0]
            prediction = draw_boxes(prediction, boxes, colors)
        panels.append(("prediction", prediction))
    if gt_panoptic is not None:
        panels.append(("ground truth", overlay(
            image, colorize_panoptic(gt_panoptic, dataset_info), alpha)))
    if not panels:
        panels.append(("image", image))
    if semantic is not None:
        panels.append(("semantic", colorize_semantic(semantic, dataset_info)))
    if center_heatmap is not None:
        panels.append(("center heatmap", colorize_heatmap(center_heatmap)))
    if offset is not None:
        panels.append(("offsets", colorize_offsets(offset)))
    return side_by_side(panels, columns=columns)
