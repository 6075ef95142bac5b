"""render_panels: one picture with every map that is given."""
import numpy as np

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.vis import render_panels
from deeplab2.vis.layout import GAP, TITLE_PAD, default_title_size

INFO = get_dataset_info("cityscapes")


def _expected_shape(h, w, count, columns):
    rows = -(-count // columns)
    title_h = default_title_size(w) + 2 * TITLE_PAD
    return (rows * (title_h + h) + (rows + 1) * GAP, columns * w + (columns + 1) * GAP, 3)


def test_all_panels():
    h, w = 24, 32
    image = np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype(np.float32)
    panoptic = np.full((h, w), 13 * 1000 + 1)
    picture = render_panels(image, dataset_info=INFO, panoptic=panoptic,
                            semantic=panoptic // 1000,
                            center_heatmap=np.zeros((h, w, 1)),
                            offset=np.zeros((h, w, 2)), gt_panoptic=panoptic)
    assert picture.dtype == np.uint8
    assert picture.shape == _expected_shape(h, w, 5, 3)


def test_image_alone_and_ground_truth():
    image = np.zeros((10, 16, 3), np.uint8)
    assert render_panels(image, dataset_info=INFO).shape == _expected_shape(10, 16, 1, 1)
    picture = render_panels(image, dataset_info=INFO, gt_panoptic=np.zeros((10, 16)),
                            semantic=np.zeros((10, 16)))
    assert picture.shape == _expected_shape(10, 16, 2, 2)
