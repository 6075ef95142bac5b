"""Putting pictures together: blending, titled grids and PNG files."""
import math
import os
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 4  # pixels between and around the cells of a grid
TITLE_PAD = 3  # pixels above and below a title
BACKGROUND = (32, 32, 32)
TITLE_COLOR = (255, 255, 255)


def as_rgb(image) -> np.ndarray:
    """An HxWx3 image (uint8, or float in [0, 255]) as uint8 RGB."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0, 255)).astype(np.uint8)


def overlay(image, colored, alpha: float = 0.5) -> np.ndarray:
    """Blends `colored` over `image`: (1 - alpha) * image + alpha * colored."""
    image, colored = as_rgb(image), as_rgb(colored)
    if image.shape != colored.shape:
        raise ValueError(f"image {image.shape} and colors {colored.shape} differ "
                         "in shape")
    blend = (1.0 - alpha) * image + alpha * colored.astype(np.float64)
    return np.round(blend).astype(np.uint8)


def default_title_size(cell_width: int) -> int:
    """Font size of titles: 12 px, larger on wide cells so they stay legible."""
    return max(12, cell_width // 48)


def side_by_side(panels: Sequence[Tuple[str, np.ndarray]],
                 columns: Optional[int] = None,
                 title_size: Optional[int] = None) -> np.ndarray:
    """Lays titled RGB images out in a grid, row by row, as one RGB image.

    Every cell is as large as the largest image (smaller ones sit top-left),
    topped by a title bar of `title_size + 2 * TITLE_PAD` pixels; cells are
    `GAP` pixels apart and from the border. `columns` defaults to
    min(len(panels), 3).
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    images = [as_rgb(image) for _, image in panels]
    columns = columns or min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    title_size = title_size or default_title_size(cell_w)
    title_h = title_size + 2 * TITLE_PAD

    canvas = Image.new("RGB", (columns * cell_w + (columns + 1) * GAP,
                               rows * (title_h + cell_h) + (rows + 1) * GAP),
                       BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=title_size)
    for index, ((title, _), image) in enumerate(zip(panels, images)):
        row, column = divmod(index, columns)
        left = GAP + column * (cell_w + GAP)
        top = GAP + row * (title_h + cell_h + GAP)
        draw.text((left, top + TITLE_PAD), title, fill=TITLE_COLOR, font=font)
        canvas.paste(Image.fromarray(image), (left, top + title_h))
    return np.asarray(canvas)


def save_png(path: str, rgb) -> None:
    """Writes an HxWx3 image as PNG, creating the folder if needed."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    Image.fromarray(as_rgb(rgb)).save(path, format="PNG")
