"""Colors for label maps: semantic classes, panoptic segments and their borders.

Everything is numpy: inputs may be numpy arrays or eager tensors, outputs are
HxWx3 uint8 RGB images ready for `overlay`, `side_by_side` or `save_png`.
"""
import numpy as np

from deeplab2.data.dataset_info import DatasetInfo

BLACK = (0, 0, 0)
WHITE = (255, 255, 255)

# Instance k gets the shade frac(k * golden ratio): consecutive ids land at least
# 0.38 apart on the dark-to-light scale, and the shade never depends on the
# other instances of the picture.
_GOLDEN = (5 ** 0.5 - 1) / 2
_DARKEST = 0.5  # darkest shade = class color * 0.5
_LIGHTEST = 0.6  # lightest shade = class color mixed 60% towards white


def _valid_classes(semantic: np.ndarray, info: DatasetInfo) -> np.ndarray:
    return ((semantic >= 0) & (semantic < info.num_classes)
            & (semantic != info.ignore_label))


def colorize_semantic(semantic, info: DatasetInfo) -> np.ndarray:
    """HxW class ids -> HxWx3 class colors; ignore and unknown ids are black."""
    semantic = np.asarray(semantic).astype(np.int64)
    valid = _valid_classes(semantic, info)
    palette = np.asarray(info.colors, np.uint8)
    rgb = palette[np.where(valid, semantic, 0)]
    rgb[~valid] = BLACK
    return rgb


def instance_shade(instance_ids) -> np.ndarray:
    """Shade in [0, 1) of each instance id (0 = darkest, 1 = lightest)."""
    return np.mod(np.asarray(instance_ids, np.float64) * _GOLDEN, 1.0)


def segment_boundaries(ids) -> np.ndarray:
    """HxW bool: pixels whose right or lower neighbour has another id.

    Marking one side only keeps the borders 1 px thin.
    """
    ids = np.asarray(ids)
    edges = np.zeros(ids.shape, bool)
    edges[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    edges[:-1, :] |= ids[:-1, :] != ids[1:, :]
    return edges


def colorize_panoptic(panoptic, info: DatasetInfo,
                      boundaries: bool = True) -> np.ndarray:
    """HxW panoptic ids -> HxWx3 RGB.

    Stuff and crowd regions (instance 0) take their class color; each thing
    instance a shade of its class color chosen by `instance_shade`; void is
    black; borders between segments (void included) are white when
    `boundaries` is set.
    """
    panoptic = np.asarray(panoptic).astype(np.int64)
    semantic = panoptic // info.label_divisor
    instance = panoptic % info.label_divisor
    rgb = colorize_semantic(semantic, info).astype(np.float64)

    valid = _valid_classes(semantic, info)
    things = valid & (instance > 0) & np.isin(semantic, info.thing_ids)
    color = rgb[things]
    dark = color * _DARKEST
    light = color + _LIGHTEST * (255.0 - color)
    shade = instance_shade(instance[things])[:, None]
    rgb[things] = dark + shade * (light - dark)
    rgb = np.round(rgb).astype(np.uint8)

    if boundaries:
        rgb[segment_boundaries(np.where(valid, panoptic, -1))] = WHITE
    return rgb
