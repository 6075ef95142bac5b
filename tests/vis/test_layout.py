"""Blending, grids with titles, PNG files."""
import numpy as np
import pytest
from PIL import Image

from deeplab2.vis import overlay, save_png, side_by_side
from deeplab2.vis.layout import BACKGROUND, GAP, TITLE_PAD


def test_overlay_blends():
    image = np.full((2, 3, 3), 100, np.uint8)
    colored = np.full((2, 3, 3), 200, np.uint8)
    assert (overlay(image, colored, alpha=0.0) == 100).all()
    assert (overlay(image, colored, alpha=1.0) == 200).all()
    blend = overlay(image.astype(np.float32), colored)
    assert blend.dtype == np.uint8 and (blend == 150).all()
    with pytest.raises(ValueError):
        overlay(image, colored[:1])


@pytest.mark.parametrize("count,columns,rows", [(1, 1, 1), (2, 2, 1), (5, 3, 2)])
def test_side_by_side_size(count, columns, rows):
    panels = [(f"panel {i}", np.full((20 + i, 30 + 2 * i, 3), 200, np.uint8))
              for i in range(count)]
    grid = side_by_side(panels, title_size=12)
    cell_h, cell_w = 20 + count - 1, 30 + 2 * (count - 1)
    title_h = 12 + 2 * TITLE_PAD
    assert grid.dtype == np.uint8
    assert grid.shape == (rows * (title_h + cell_h) + (rows + 1) * GAP,
                          columns * cell_w + (columns + 1) * GAP, 3)


def test_side_by_side_places_images_and_titles():
    red = np.zeros((10, 40, 3), np.uint8)
    red[..., 0] = 255
    grid = side_by_side([("red", red), ("blue", red[..., ::-1])], title_size=12)
    top = GAP + 12 + 2 * TITLE_PAD
    assert (grid[top:top + 10, GAP:GAP + 40] == (255, 0, 0)).all()
    right = 2 * GAP + 40
    assert (grid[top:top + 10, right:right + 40] == (0, 0, 255)).all()
    title_bar = grid[GAP:top, GAP:GAP + 40]
    assert (title_bar != BACKGROUND).any(), "title text missing"


def test_side_by_side_needs_panels():
    with pytest.raises(ValueError):
        side_by_side([])


def test_save_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "picture.png"
    save_png(str(path), rgb)
    assert (np.asarray(Image.open(path)) == rgb).all()
