"""draw_boxes: exact outline pixels, clipping, empty boxes; boxes on the prediction panel."""
import numpy as np
import pytest

from deeplab2.data.dataset_info import get_dataset_info
from deeplab2.vis import colorize_panoptic, draw_boxes, render_panels
from deeplab2.vis.layout import GAP, TITLE_PAD, default_title_size

RED, GREEN = (255, 0, 0), (0, 255, 0)


def _marks(picture, color):
    """0/1 map of the pixels of one color."""
    return np.all(picture == color, axis=-1).astype(int)


def test_outline_pixels():
    image = np.zeros((5, 6, 3), np.uint8)
    drawn = draw_boxes(image, [(1, 1, 5, 4)], [RED])
    np.testing.assert_array_equal(_marks(drawn, RED), [
        [0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 0, 0, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 0]])
    assert not image.any()  # the input is left alone


def test_thickness_and_fractional_edges_round_to_the_nearest_edge():
    drawn = draw_boxes(np.zeros((6, 6, 3), np.uint8), [(0.4, 0.6, 5.6, 6.2)], RED,
                       thickness=2)
    np.testing.assert_array_equal(_marks(drawn, RED), [
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 0, 0, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1]])


def test_boxes_partly_outside_are_clipped_and_empty_boxes_draw_nothing():
    image = np.zeros((4, 5, 3), np.uint8)
    boxes = [(-3, -3, 2, 2),        # only its right and bottom sides show
             (3, 2, 1e9, 1e9),      # only its left and top sides show
             (2, 1, 2, 3),          # zero width
             (0, 3, 4, 3),          # zero height
             (4, 4, 1, 1),          # inverted
             (-1e30, 10, 1e30, 20)]  # entirely below the image
    drawn = draw_boxes(image, boxes, [RED, GREEN, RED, RED, RED, RED])
    np.testing.assert_array_equal(_marks(drawn, RED), [
        [0, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(_marks(drawn, GREEN), [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1],
        [0, 0, 0, 1, 0]])
    assert (draw_boxes(image, np.zeros((0, 4)), np.zeros((0, 3))) == 0).all()


def test_bad_input_is_refused():
    image = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="boxes must be finite"):
        draw_boxes(image, [(0, 0, 2)], RED)
    with pytest.raises(ValueError, match="boxes must be finite"):
        draw_boxes(image, [(0, 0, np.inf, 2)], RED)
    with pytest.raises(ValueError, match=r"colors must be one RGB color or \[2, 3\]"):
        draw_boxes(image, [(0, 0, 2, 2), (1, 1, 3, 3)], [RED])


def test_prediction_panel_outlines_each_box_in_its_instance_color():
    info = get_dataset_info("cityscapes")
    h, w = 12, 16
    panoptic = np.zeros((h, w), np.int64)
    panoptic[2:6, 3:9] = 13 * 1000 + 1
    image = np.full((h, w, 3), 100, np.uint8)
    plain = render_panels(image, dataset_info=info, panoptic=panoptic)
    boxed = render_panels(image, dataset_info=info, panoptic=panoptic,
                          boxes=[(3, 2, 9, 6)], box_ids=[13001])
    top, left = GAP + default_title_size(w) + 2 * TITLE_PAD, GAP
    changed = np.zeros(plain.shape[:2], bool)
    changed[top + 2:top + 6, left + 3:left + 9] = True
    changed[top + 3:top + 5, left + 4:left + 8] = False
    color = colorize_panoptic(np.array([[13001]]), info, boundaries=False)[0, 0]
    np.testing.assert_array_equal(np.any(boxed != plain, axis=-1), changed)
    assert (boxed[changed] == color).all()
    with pytest.raises(ValueError, match="boxes and box_ids must be given together"):
        render_panels(image, dataset_info=info, panoptic=panoptic, boxes=[(3, 2, 9, 6)])
