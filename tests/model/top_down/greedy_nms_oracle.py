"""Plain numpy greedy NMS, the oracle of the NMS and detection tests."""
import numpy as np


def _area(boxes):
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou_with(box, others):
    """float64 IoU of one (x0, y0, x1, y1) box with [N, 4] boxes; 0 for an empty union."""
    box, others = np.float64(box), np.float64(others)
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = width * height
    union = _area(box) + _area(others) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy_nms(boxes, scores, iou_threshold):
    """Indices kept by greedy NMS: best score first (ties: lower index), drop IoU > t."""
    kept = []
    for i in np.argsort(-scores, kind="stable"):
        if not kept or np.all(iou_with(boxes[i], boxes[kept]) <= iou_threshold):
            kept.append(i)
    return np.array(kept, np.int64)
