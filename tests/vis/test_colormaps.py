"""Semantic and panoptic colors: class colors, instance shades, borders, void."""
import numpy as np
import pytest

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.vis import colorize_panoptic, colorize_semantic
from deeplab2.vis.colormaps import segment_boundaries

CITYSCAPES = get_dataset_info("cityscapes")
COCO = get_dataset_info("coco")
ROAD, SKY, PERSON, CAR = 0, 10, 11, 13


def test_semantic_colors_and_ignore_black():
    semantic = np.array([[ROAD, SKY], [255, 99]])
    rgb = colorize_semantic(semantic, CITYSCAPES)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == CITYSCAPES.colors[ROAD]
    assert tuple(rgb[0, 1]) == CITYSCAPES.colors[SKY]
    assert tuple(rgb[1, 0]) == (0, 0, 0)  # ignore
    assert tuple(rgb[1, 1]) == (0, 0, 0)  # not a class


def _scene(info):
    """8x12: road (cols 0-3), person 1 (4-7), person 2 (8-11); bottom row void."""
    d = info.label_divisor
    panoptic = np.full((8, 12), ROAD * d)
    panoptic[:, 4:8] = PERSON * d + 1
    panoptic[:, 8:] = PERSON * d + 2
    panoptic[7, :] = info.ignore_panoptic_id
    return panoptic


def test_stuff_pixels_take_the_class_color():
    rgb = colorize_panoptic(_scene(CITYSCAPES), CITYSCAPES, boundaries=False)
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 12, 3)
    assert (rgb[:7, :4] == CITYSCAPES.colors[ROAD]).all()


def test_instances_of_one_class_get_different_shades():
    rgb = colorize_panoptic(_scene(CITYSCAPES), CITYSCAPES, boundaries=False)
    first, second = rgb[0, 5].astype(int), rgb[0, 9].astype(int)
    assert (rgb[:7, 4:8] == first).all() and (rgb[:7, 8:] == second).all()
    assert np.abs(first - second).sum() >= 60  # clearly different
    assert tuple(first) != CITYSCAPES.colors[PERSON]


def test_shades_are_deterministic_per_instance_id():
    d = CITYSCAPES.label_divisor
    alone = colorize_panoptic(np.full((2, 2), CAR * d + 3), CITYSCAPES)
    crowded = colorize_panoptic(
        np.array([[CAR * d + 3, CAR * d + 1], [CAR * d + 2, CAR * d + 5]]),
        CITYSCAPES, boundaries=False)
    assert tuple(alone[1, 1]) == tuple(crowded[0, 0])


def test_crowd_takes_the_class_color_and_void_is_black():
    d = CITYSCAPES.label_divisor
    panoptic = np.array([[CAR * d, CAR * d], [255 * d, 255 * d]])
    rgb = colorize_panoptic(panoptic, CITYSCAPES, boundaries=False)
    assert (rgb[0] == CITYSCAPES.colors[CAR]).all()
    assert (rgb[1] == 0).all()


def test_coco_void_class_zero_is_black():
    panoptic = np.array([[0, 0], [COCO.thing_ids[0] * 256 + 1] * 2])
    rgb = colorize_panoptic(panoptic, COCO, boundaries=False)
    assert (rgb[0] == 0).all() and (rgb[1] != 0).any()


def test_boundaries_exactly_at_segment_borders():
    panoptic = _scene(CITYSCAPES)
    expected = np.zeros(panoptic.shape, bool)
    expected[:7, 3] = expected[:7, 7] = True  # left of each vertical border
    expected[6, :] = True  # above the void row
    assert (segment_boundaries(panoptic) == expected).all()
    rgb = colorize_panoptic(panoptic, CITYSCAPES)
    assert (rgb[expected] == 255).all()
    plain = colorize_panoptic(panoptic, CITYSCAPES, boundaries=False)
    assert (rgb[~expected] == plain[~expected]).all()


def test_accepts_tensors():
    tf = pytest.importorskip("tensorflow")
    panoptic = _scene(CITYSCAPES)
    assert (colorize_panoptic(tf.constant(panoptic), CITYSCAPES)
            == colorize_panoptic(panoptic, CITYSCAPES)).all()
