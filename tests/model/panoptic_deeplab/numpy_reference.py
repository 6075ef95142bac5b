"""Plain-Python oracle of Panoptic-DeepLab post-processing, one pixel at a time.

Written from SPEC section 6 and the documented choices of
deeplab2.model.panoptic_deeplab.postprocess, not from its code: slow and obvious
on purpose.
- centers: heatmap values <= threshold become 0; a pixel > 0 that equals the max
  of its nms_kernel x nms_kernel window (clipped at the border) is a candidate;
  candidates sorted by score descending, then by flat index y * W + x; first k.
- distance (`squared_distance`): dy = float32((y - cy) + offset_y), dx likewise;
  in float32 only, d = dy**2 + dx**2 summed from exact products; the first
  center with the smallest d wins.
- vote: most frequent class among the instance's pixels, smaller id on ties.
- stuff class kept when its area > stuff_area_limit; everything else is void.
"""
import numpy as np


def postprocess(scores, heatmap, offset, *, scores_are_logits, thing_class_ids,
                label_divisor, ignore_label, stuff_area_limit, center_threshold,
                nms_kernel, keep_k_centers):
    """Batched inputs as numpy arrays -> dict of numpy outputs like the library's."""
    per_image = [_one_image(scores[b], heatmap[b, :, :, 0], offset[b],
                            scores_are_logits, thing_class_ids, label_divisor,
                            ignore_label, stuff_area_limit, center_threshold,
                            nms_kernel, keep_k_centers)
                 for b in range(scores.shape[0])]
    return {key: np.stack([result[key] for result in per_image])
            for key in per_image[0]}


def squared_distance(dy, dx):
    """float32 arrays dy, dx -> float32 dy**2 + dx**2, as grouping defines it.

    A |d| below 2**-32 counts as 0. Each d is split into hi (d with the low 12
    mantissa bits cleared) and lo = d - hi; the six products hi*hi, 2*hi*lo and
    lo*lo (per axis) are exact in float32 and are summed in this order:
    (hi_y**2 + hi_x**2) + ((2 hi_y lo_y + 2 hi_x lo_x) + (lo_y**2 + lo_x**2)).
    """
    def split(d):
        d = np.asarray(d, np.float32)
        d = np.where(np.abs(d) < np.float32(2.0 ** -32), np.float32(0), d)
        hi = (d.view(np.uint32) & np.uint32(0xFFFFF000)).view(np.float32)
        return hi, d - hi

    hi_y, lo_y = split(dy)
    hi_x, lo_x = split(dx)
    two = np.float32(2)
    return ((hi_y * hi_y + hi_x * hi_x)
            + ((two * hi_y * lo_y + two * hi_x * lo_x) + (lo_y * lo_y + lo_x * lo_x)))


def find_centers(heat, threshold, kernel, keep_k):
    """List of (score, y, x), best first."""
    height, width = heat.shape
    heat = np.where(heat > threshold, heat, 0).astype(np.float32)
    radius = kernel // 2
    candidates = []
    for y in range(height):
        for x in range(width):
            value = heat[y, x]
            window = heat[max(0, y - radius):y + radius + 1,
                          max(0, x - radius):x + radius + 1]
            if value > 0 and value == window.max():
                candidates.append((-value, y * width + x, y, x))
    candidates.sort()
    return [(-negative, y, x) for negative, _, y, x in candidates[:keep_k]]


def _one_image(scores, heat, offset, scores_are_logits, thing_ids, divisor, ignore,
               area_limit, threshold, kernel, keep_k):
    height, width, num_classes = scores.shape
    void = ignore * divisor
    semantic = np.zeros((height, width), np.int32)
    for y in range(height):
        for x in range(width):
            semantic[y, x] = int(np.argmax(scores[y, x]))  # first maximum
    centers = find_centers(heat, threshold, kernel, keep_k)
    center_y = np.array([cy for _, cy, _ in centers], np.int64)
    center_x = np.array([cx for _, _, cx in centers], np.int64)
    offset = np.asarray(offset, np.float32)

    instance = np.zeros((height, width), np.int32)
    for y in range(height):
        for x in range(width):
            if semantic[y, x] not in thing_ids:
                continue
            best = None
            dy = (y - center_y).astype(np.float32) + offset[y, x, 0]
            dx = (x - center_x).astype(np.float32) + offset[y, x, 1]
            for index, distance in enumerate(squared_distance(dy, dx)):
                if best is None or distance < best:
                    best = distance
                    instance[y, x] = index + 1

    if scores_are_logits:
        logits = scores.astype(np.float64)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = exp / exp.sum(axis=-1, keepdims=True)
    else:
        probabilities = scores.astype(np.float64)

    classes = np.full(keep_k, ignore, np.int32)
    panoptic_ids = np.full(keep_k, void, np.int32)
    instance_scores = np.zeros(keep_k, np.float64)
    next_k = {}
    for index, (center_score, _, _) in enumerate(centers):
        mask = instance == index + 1
        if not mask.any():
            continue
        counts = {}
        for label in semantic[mask]:
            counts[int(label)] = counts.get(int(label), 0) + 1
        label = min(counts, key=lambda c: (-counts[c], c))
        next_k[label] = next_k.get(label, 0) + 1
        classes[index] = label
        panoptic_ids[index] = label * divisor + next_k[label]
        instance_scores[index] = center_score * probabilities[mask][:, label].mean()

    panoptic = np.full((height, width), void, np.int32)
    for label in range(num_classes):
        if label not in thing_ids and (semantic == label).sum() > area_limit:
            panoptic[semantic == label] = label * divisor
    for index in range(len(centers)):
        panoptic[instance == index + 1] = panoptic_ids[index]

    points = np.full((keep_k, 2), -1, np.int32)
    for index, (_, cy, cx) in enumerate(centers):
        points[index] = (cy, cx)
    return {"semantic": semantic, "instance": instance, "panoptic": panoptic,
            "instance_scores": instance_scores, "instance_classes": classes,
            "instance_panoptic_ids": panoptic_ids, "instance_centers": points}
